"""Two workers' batches that meet in one household, in two concurrent transactions.

Events are keyed by person, so a child's move-in and an adult's ED attendance in the same
household can be in flight on two workers at once. Whichever transaction takes the
household's lock second must see the other's commit, so rule 1 fires exactly once whatever
the interleaving (without the lock, each reads before the other commits: no alert).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.e2e.test_publish_to_alert import wait_for
from tests.factories import (
    ADDRESS,
    NOW,
    Feeder,
    ed_attendance,
    encode,
    moved_in,
    person,
    pipeline_config,
    register_orgs,
    years_before,
)

from lookout.alerts.models import Alert
from lookout.pipeline import Message, PipelineConfig, process_batch

pytestmark = pytest.mark.asyncio


async def blocked_on_a_lock(session: AsyncSession) -> bool:
    waiting = await session.scalar(
        text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
    )
    return bool(waiting)


async def finished_or_blocked(task: asyncio.Task[None], observer: AsyncSession) -> bool:
    return task.done() or await blocked_on_a_lock(observer)


async def batch(
    session: AsyncSession, config: PipelineConfig, partition: int, event: dict[str, Any]
) -> None:
    messages = [Message("events", partition, 0, b"key", raw) for raw in encode([event])]
    await process_batch(session, messages, config, {})


@pytest.mark.parametrize("first", ["adult_attends_ed", "child_moves_in"])
async def test_the_second_transaction_sees_the_first(
    sessions: async_sessionmaker[AsyncSession], first: str
) -> None:
    await register_orgs(sessions)
    adult, child = person(years_before(NOW, 34)), person(years_before(NOW, 4))
    since = years_before(NOW, 1)
    await Feeder(sessions).feed([moved_in(adult, since, ADDRESS)], partition=9)
    batches = {
        "adult_attends_ed": (0, ed_attendance(adult, at=NOW - timedelta(hours=1))),
        "child_moves_in": (1, moved_in(child, since, ADDRESS)),
    }
    second = next(name for name in batches if name != first)
    config = pipeline_config()

    async with sessions() as one, one.begin():
        await batch(one, config, *batches[first])  # holds the household's lock, uncommitted

        async def run_second() -> None:
            async with sessions() as two, two.begin():
                await batch(two, config, *batches[second])

        task = asyncio.create_task(run_second())
        async with sessions() as observer:
            await wait_for(lambda: finished_or_blocked(task, observer))
    assert not task.done(), "the second batch ran its reads before the first committed"
    await task

    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Alert)) == 1
