"""The middleware every request passes: request ids, metrics, the 503 when PostgreSQL does
not answer, the last-resort 500."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest
from fastapi import Request
from prometheus_client import REGISTRY
from sqlalchemy import make_url, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import client_token, raise_alerts, register_orgs, serve

from lookout.api.app import create_app
from lookout.audit.actions import Action
from lookout.audit.models import AuditRecord
from lookout.db import plain_url
from lookout.embedded.postgres import free_port
from lookout.settings import Settings

pytestmark = pytest.mark.asyncio


def _requests(route: str, status: str, method: str = "GET") -> float:
    value = REGISTRY.get_sample_value(
        "lookout_api_requests_total", {"route": route, "method": method, "status": status}
    )
    return value or 0.0


async def test_the_request_id_is_echoed_audited_and_the_request_counted(
    sessions: async_sessionmaker[AsyncSession], api_url: str
) -> None:
    await register_orgs(sessions)
    await raise_alerts(sessions, 1)
    async with httpx.AsyncClient(base_url=api_url) as http:
        own = await client_token(http, sessions, "hackney-cs")
        before = _requests("/v1/alerts", "200")
        given = await http.get("/v1/alerts", headers={**own, "X-Request-ID": "req-from-client"})
        assert given.status_code == 200
        assert given.headers["X-Request-ID"] == "req-from-client"
        made = await http.get("/v1/alerts", headers=own)
        assert len(made.headers["X-Request-ID"]) == 32  # a new one when none is given
        refused = await http.get("/v1/alerts", headers={"X-Request-ID": "req-no-token"})
        assert refused.status_code == 401
        assert refused.headers["X-Request-ID"] == "req-no-token"
        assert refused.json()["request_id"] == "req-no-token"
        assert _requests("/v1/alerts", "200") == before + 2
    async with sessions() as session:
        listed = (
            await session.scalars(
                select(AuditRecord.request_id).where(AuditRecord.action == Action.alert_listed)
            )
        ).all()
    assert "req-from-client" in listed
    assert made.headers["X-Request-ID"] in listed


async def test_an_unhandled_error_answers_a_problem_without_its_text(settings: Settings) -> None:
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail of the failure")

    before = _requests("/boom", "500")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        answer = await http.get("/boom", headers={"X-Request-ID": "req-boom"})
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["X-Request-ID"] == "req-boom"
    body = answer.json()
    assert body["title"] == "Internal error"
    assert body["request_id"] == "req-boom"
    assert "secret" not in answer.text
    assert _requests("/boom", "500") == before + 1


def _assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["Retry-After"] == "5"
    body = answer.json()
    assert body["title"] == "Service unavailable"
    assert body["request_id"] == answer.headers["X-Request-ID"]


async def test_a_request_while_postgresql_does_not_answer_gets_503_with_retry_after(
    settings: Settings,
) -> None:
    nowhere = make_url(settings.database_url).set(port=free_port())
    away = settings.model_copy(
        update={"database_url": nowhere.render_as_string(hide_password=False)}
    )
    before = _requests("/v1/token", "503", "POST")
    async with serve(create_app(away)) as url, httpx.AsyncClient(base_url=url) as http:
        answer = await http.post(
            "/v1/token",
            data={"grant_type": "client_credentials", "client_id": "c", "client_secret": "s"},
        )
        ready = await http.get("/readyz")
    _assert_unavailable(answer)
    assert ready.status_code == 503
    assert ready.headers["Retry-After"] == "5"
    assert ready.json()["checks"] == {"database": "unavailable", "broker": "ok"}
    assert _requests("/v1/token", "503", "POST") == before + 1


async def test_a_request_whose_connection_is_ended_mid_statement_gets_503(
    settings: Settings,
) -> None:
    """PostgreSQL restarting (or an operator ending the backend) while a request's statement
    runs: the client is told to retry, not that Lookout failed."""
    app = create_app(settings)
    statement = "SELECT pg_sleep(20)"

    @app.get("/slow")
    async def slow(request: Request) -> None:
        async with request.app.state.sessions() as session:
            await session.execute(text(statement))

    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        pending = asyncio.create_task(http.get("/slow"))
        admin = await asyncpg.connect(plain_url(settings.database_url))
        try:
            ended = 0
            while not ended and not pending.done():
                await asyncio.sleep(0.05)
                ended = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE query = $1 AND pid <> pg_backend_pid()",
                    statement,
                )
        finally:
            await admin.close()
        answer = await pending
    assert ended == 1
    _assert_unavailable(answer)
