"""``lookout.db.fetch`` runs on the session's own connection and transaction: what it
writes commits or rolls back with the session's other statements, whichever ran first,
and after the transaction ends it runs in the session's next one."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lookout.api.deps import commit_each_statement
from lookout.db import create_engine, fetch, plain_url, session_factory
from lookout.settings import Settings


async def _probe(sessions: async_sessionmaker[AsyncSession]) -> list[int]:
    async with sessions() as session:
        return sorted((await session.execute(text("SELECT n FROM fetch_probe"))).scalars())


@pytest.fixture
async def probe(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        await session.execute(text("CREATE TABLE IF NOT EXISTS fetch_probe (n int)"))
        await session.execute(text("DELETE FROM fetch_probe"))


@pytest.mark.usefixtures("probe")
@pytest.mark.parametrize("first", ["fetch", "session"])
async def test_fetch_runs_in_the_session_transaction(
    sessions: async_sessionmaker[AsyncSession], first: str
) -> None:
    """As the transaction's first statement (the dialect begins transactions lazily) or
    after a statement through the session: a rollback undoes it, a commit keeps it."""
    for n, commit in ((1, False), (2, True)):
        async with sessions() as session:
            if first == "session":
                await session.execute(text("SELECT 1"))
            await fetch(session, "INSERT INTO fetch_probe VALUES ($1)", n)
            [(pid,)] = await fetch(session, "SELECT pg_backend_pid()")
            assert (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one() == pid
            await (session.commit() if commit else session.rollback())
    assert await _probe(sessions) == [2]


@pytest.mark.usefixtures("probe")
async def test_fetch_in_autocommit_commits_each_statement(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        await commit_each_statement(session)
        await fetch(session, "INSERT INTO fetch_probe VALUES (3)")
        await session.rollback()
    assert await _probe(sessions) == [3]


async def _txid(session: AsyncSession) -> int:
    return await _value(session, "SELECT txid_current()")


async def _value(session: AsyncSession, sql: str) -> int:
    [(value,)] = await fetch(session, sql)
    return int(value)


@pytest.mark.parametrize("end", ["commit", "rollback", "failed statement"])
async def test_fetch_follows_the_session_into_its_next_transaction(
    sessions: async_sessionmaker[AsyncSession], end: str
) -> None:
    """One session, several transactions (as the worker runs its batches): ``fetch`` keeps
    to one transaction until the session ends it, then runs in the next one."""
    async with sessions() as session:
        first = await _txid(session)
        assert await _txid(session) == first
        if end == "failed statement":
            with pytest.raises(asyncpg.PostgresError):
                await fetch(session, "SELECT 1 / 0")
        await (session.commit() if end == "commit" else session.rollback())
        second = await _txid(session)
        assert second != first
        assert await _txid(session) == second  # in a transaction, not one per statement
        assert (await session.execute(text("SELECT txid_current()"))).scalar_one() == second


async def test_fetch_never_uses_a_connection_given_back(settings: Settings) -> None:
    """With one pooled connection: after A commits, B takes the connection and begins a
    transaction. A's next ``fetch`` waits for the connection instead of running in B's
    transaction (or beside B's statement on the same connection)."""
    engine = create_engine(settings.database_url, pool_size=1, max_overflow=0)
    sessions = session_factory(engine)
    try:
        async with sessions() as a, sessions() as b:
            await _txid(a)
            await a.commit()
            taken = await _txid(b)
            waiting = asyncio.create_task(_txid(a))
            assert await _txid(b) == taken
            await b.commit()
            assert await waiting != taken
    finally:
        await engine.dispose()


_BACKEND = "SELECT pg_backend_pid()"


async def test_connections_the_server_closed_are_replaced_not_used(settings: Settings) -> None:
    """No pre-ping: a pooled connection whose session the server ended (a restart, an
    operator) is replaced as it is taken from the pool, so the next transactions run."""
    engine = create_engine(settings.database_url, pool_size=2, max_overflow=0)
    sessions = session_factory(engine)
    try:
        async with sessions() as a, sessions() as b:  # both pooled connections in use
            before = {await _value(a, _BACKEND), await _value(b, _BACKEND)}
        admin = await asyncpg.connect(plain_url(settings.database_url))
        try:
            ended = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE pid = ANY($1::int[])",
                list(before),
            )
        finally:
            await admin.close()
        assert ended == 2
        await asyncio.sleep(0.5)  # this event loop sees the sockets close
        async with sessions() as a, sessions() as b:
            after = {await _value(a, _BACKEND), await _value(b, _BACKEND)}
        assert after.isdisjoint(before)
        assert len(after) == 2
    finally:
        await engine.dispose()
