"""The API's connection pool: connections the server closed are replaced, not used."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import client_token, raise_alerts, register_orgs

from lookout.api.app import api_engine
from lookout.api.deps import commit_each_statement
from lookout.db import plain_url, session_factory
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


async def test_a_statement_commits_on_its_own_only_in_its_request(settings: Settings) -> None:
    """``commit_each_statement`` (a list and its audit record): the statement is committed
    without the request's COMMIT; the same pooled connection serves the next request in
    the usual one-transaction mode, where a rollback undoes its statements."""
    engine = api_engine(settings.database_url)
    sessions = session_factory(engine)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE probe (n int)"))
        async with sessions() as session:
            await commit_each_statement(session)
            await session.execute(text("INSERT INTO probe VALUES (1)"))
            first = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await session.rollback()
        async with sessions() as session:
            await session.execute(text("INSERT INTO probe VALUES (2)"))
            again = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await session.rollback()
        async with sessions() as session:
            kept = (await session.execute(text("SELECT n FROM probe"))).scalars().all()
    finally:
        await engine.dispose()
    assert again == first  # the same pooled connection
    assert kept == [1]
