"""The HTTP API: ``create_app(settings)`` builds it; engines are made in the lifespan."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import structlog
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lookout import kafka, metrics
from lookout.alerts.endpoints import operator_router
from lookout.alerts.endpoints import router as alerts_router
from lookout.api.health import router as health_router
from lookout.api.tokens import VerifiedTokens
from lookout.audit.endpoints import router as audit_router
from lookout.db import create_engine, session_factory
from lookout.delivery.endpoints import router as subscriptions_router
from lookout.delivery.endpoints import stream_router
from lookout.errors import RETRY_AFTER_S, LookoutError, transient
from lookout.household.endpoints import router as households_router
from lookout.identity.endpoints import persons_router
from lookout.identity.endpoints import router as identity_router
from lookout.ingest.catalogue import Catalogue
from lookout.ingest.endpoints import router as publishers_router
from lookout.logging import configure_logging, safe_error
from lookout.orgs.admin_endpoints import router as admin_router
from lookout.orgs.endpoints import router as token_router
from lookout.runtime import tune_gc
from lookout.settings import Settings, get_settings

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


def _internal_error(request_id: str) -> JSONResponse:
    return _problem(500, "Internal error", "the request failed; quote the request id", request_id)


def _unavailable(request_id: str) -> JSONResponse:
    response = _problem(
        503,
        "Service unavailable",
        "the database or the broker could not serve the request just now; retry it",
        request_id,
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def api_engine(url: str) -> AsyncEngine:
    """The API's engine: ``db.create_engine`` (no pre-ping; closed connections replaced
    as they are taken from the pool) with room for concurrent requests."""
    return create_engine(url, pool_size=10)


class Observe:
    """Every HTTP request: its request id (``X-Request-ID``, or a new one) in
    ``request.state``, the log context and the response header; the request metrics; and,
    for an error nothing else handled, a problem response that says nothing of the error.

    A plain ASGI middleware rather than ``@app.middleware("http")``: Starlette's
    ``BaseHTTPMiddleware`` runs the app in a task of its own and passes the response
    through memory streams, a cost on every request that this does not have. The request
    is counted and timed when its response starts (the status is known then; a streamed
    response's body, e.g. the SSE stream, is not part of its latency)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = Headers(scope=scope).get("x-request-id", "")[:64] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        structlog.contextvars.bind_contextvars(request_id=rid)
        started = time.perf_counter()
        response_started = False

        async def send_observed(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start" and not response_started:
                response_started = True
                MutableHeaders(scope=message)["X-Request-ID"] = rid
                route = getattr(scope.get("route"), "path", "unmatched")
                method = scope["method"]
                metrics.API_REQUESTS.labels(route, method, str(message["status"])).inc()
                metrics.API_LATENCY.labels(route, method).observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except Exception as exc:  # never a bare 500 with a stack trace; never the error text
            away = transient(exc)
            if away:  # PostgreSQL or the broker: not the request's fault, worth retrying
                log.warning("dependency unavailable", error=safe_error(exc))
            else:
                log.error("unhandled error", error=safe_error(exc))
            if response_started:  # too late for a problem response: the server closes it
                raise
            response = _unavailable(rid) if away else _internal_error(rid)
            await response(scope, receive, send_observed)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")


def create_app(settings: Settings) -> FastAPI:
    if not settings.token_secret.get_secret_value():
        raise SystemExit("LOOKOUT_TOKEN_SECRET is not set: tokens cannot be signed (see README)")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = api_engine(settings.database_url)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        # HTTPS ingest: the catalogue once per process, and one producer for every request.
        app.state.catalogue = Catalogue.load(settings.schemas_dir)
        producer = AIOKafkaProducer(
            **kafka.producer_config(settings.kafka_bootstrap_servers),
            request_timeout_ms=round(settings.api_broker_timeout_s * 1000),
        )
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
        responses={
            503: {
                "description": "PostgreSQL or the broker could not serve it just now: retry",
                "headers": {
                    "Retry-After": {
                        "description": "Seconds to wait before retrying",
                        "schema": {"type": "integer"},
                    }
                },
            }
        },
    )
    app.state.settings = settings
    app.state.tokens = VerifiedTokens(settings.token_secret.get_secret_value())

    app.add_middleware(Observe)

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


def app_from_env() -> FastAPI:
    """The app of one of ``lookout api``'s worker processes (``LOOKOUT_API_WORKERS`` > 1):
    uvicorn starts each as a new interpreter, which reads the settings and sets up logging."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    app = create_app(settings)
    tune_gc()
    return app


@contextmanager
def multiprocess_metrics() -> Iterator[None]:
    """Around several API processes: their Prometheus metrics go to files in a shared
    folder (``PROMETHEUS_MULTIPROC_DIR``, set here to a new temporary one unless it is
    set), which ``/metrics`` of any of them sums. Must be entered before the processes
    start (prometheus_client reads the variable at import)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="lookout-api-metrics-") as folder:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        try:
            yield
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]
