"""``lookout.db.fetch`` runs on the session's own connection and transaction: what it
writes commits or rolls back with the session's other statements, whichever ran first."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lookout.api.deps import commit_each_statement
from lookout.db import fetch


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
