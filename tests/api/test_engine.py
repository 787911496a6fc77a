"""The API's connection pool: connections the server closed are replaced, not used."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import client_token, raise_alerts, register_orgs

from lookout.db import plain_url
from lookout.settings import Settings

pytestmark = pytest.mark.asyncio


async def test_requests_after_the_server_ended_every_pooled_session_still_succeed(
    sessions: async_sessionmaker[AsyncSession], api_url: str, settings: Settings
) -> None:
    await register_orgs(sessions)
    await raise_alerts(sessions, 2)
    async with httpx.AsyncClient(base_url=api_url) as http:
        own = await client_token(http, sessions, "hackney-cs")
        # Several at once: several connections in the API's pool.
        first = await asyncio.gather(*(http.get("/v1/alerts", headers=own) for _ in range(4)))
        assert {r.status_code for r in first} == {200}
        admin = await asyncpg.connect(plain_url(settings.database_url))
        try:
            ended = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        assert ended >= 1
        await asyncio.sleep(0.5)  # the API's event loop sees the sockets close
        after = await asyncio.gather(*(http.get("/v1/alerts", headers=own) for _ in range(4)))
        assert [r.status_code for r in after] == [200] * 4, [r.text for r in after]
        assert len(after[0].json()["items"]) == 2
