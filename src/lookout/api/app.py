"""The HTTP API: ``create_app(settings)`` builds it; engines are made in the lifespan."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lookout import kafka, metrics
from lookout.alerts.endpoints import operator_router
from lookout.alerts.endpoints import router as alerts_router
from lookout.api.health import router as health_router
from lookout.audit.endpoints import router as audit_router
from lookout.db import create_engine, session_factory
from lookout.delivery.endpoints import router as subscriptions_router
from lookout.delivery.endpoints import stream_router
from lookout.errors import LookoutError
from lookout.household.endpoints import router as households_router
from lookout.identity.endpoints import persons_router
from lookout.identity.endpoints import router as identity_router
from lookout.ingest.catalogue import Catalogue
from lookout.ingest.endpoints import router as publishers_router
from lookout.logging import safe_error
from lookout.orgs.admin_endpoints import router as admin_router
from lookout.orgs.endpoints import router as token_router
from lookout.settings import Settings

log = structlog.get_logger("lookout.api")

PROBLEM = "application/problem+json"


def _problem(
    status: int, title: str, detail: str, request_id: str, **extra: object
) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "request_id": request_id,
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def create_app(settings: Settings) -> FastAPI:
    if not settings.token_secret.get_secret_value():
        raise SystemExit("LOOKOUT_TOKEN_SECRET is not set: tokens cannot be signed (see README)")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url, pool_size=10)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        # HTTPS ingest: the catalogue once per process, and one producer for every request.
        app.state.catalogue = Catalogue.load(settings.schemas_dir)
        producer = AIOKafkaProducer(**kafka.producer_config(settings.kafka_bootstrap_servers))
        await producer.start()
        app.state.producer = producer
        try:
            yield
        finally:
            await producer.stop()
            await engine.dispose()

    app = FastAPI(
        title="Lookout",
        version="1",
        summary="Information sharing and risk triggers for children's safeguarding",
        lifespan=lifespan,
    )
    app.state.settings = settings

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request.state.request_id = request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request.state.request_id)
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception as exc:  # never a bare 500 with a stack trace; never the error text
            log.error("unhandled error", error=safe_error(exc))
            response = _problem(
                500,
                "Internal error",
                "the request failed; quote the request id",
                request.state.request_id,
            )
        route = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.API_REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        metrics.API_LATENCY.labels(route, request.method).observe(time.perf_counter() - started)
        response.headers["X-Request-ID"] = request.state.request_id
        structlog.contextvars.unbind_contextvars("request_id")
        return response

    @app.exception_handler(LookoutError)
    async def lookout_error(request: Request, exc: LookoutError) -> JSONResponse:
        return _problem(exc.status, exc.title, exc.detail, request.state.request_id, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"]} for e in exc.errors()[:10]]
        return _problem(
            422,
            "Invalid request",
            "the request does not match the API",
            request.state.request_id,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _problem(exc.status_code, "HTTP error", str(exc.detail), request.state.request_id)

    app.include_router(health_router)
    app.include_router(token_router)
    app.include_router(admin_router)
    app.include_router(stream_router)  # before /v1/alerts/{alert_id}
    app.include_router(alerts_router)
    app.include_router(audit_router)
    app.include_router(subscriptions_router)
    app.include_router(publishers_router)
    app.include_router(operator_router)
    app.include_router(households_router)
    app.include_router(persons_router)
    app.include_router(identity_router)
    return app
