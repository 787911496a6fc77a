"""The middleware every request passes: request ids, metrics, the last-resort 500."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import client_token, raise_alerts, register_orgs

from lookout.api.app import create_app
from lookout.audit.actions import Action
from lookout.audit.models import AuditRecord
from lookout.settings import Settings

pytestmark = pytest.mark.asyncio


def _requests(route: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "lookout_api_requests_total", {"route": route, "method": "GET", "status": status}
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
