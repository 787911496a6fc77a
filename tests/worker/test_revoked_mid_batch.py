"""A partition revoked while a batch is running: the worker never commits work for a
partition another worker has moved on (the compare-and-set offset write fences it), and
never writes its idea of the position over what the rebalance listener decided.

The batch is held just before its offset write by a real lock on ``consumer_offsets``
taken from another connection; the rebalance happens meanwhile."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import orjson
import pytest
from aiokafka import TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.e2e.test_publish_to_alert import count
from tests.factories import moved_in, person, register_orgs, years_before
from tests.worker.test_poison import poison_trigger

from lookout.db import plain_url
from lookout.ingest.models import Event, Rejection
from lookout.ingest.repository import Position
from lookout.pipeline import Message
from lookout.settings import Settings
from lookout.worker import Worker

pytestmark = pytest.mark.asyncio


async def _held_before_offsets(settings: Settings) -> asyncpg.Connection:
    blocker = await asyncpg.connect(plain_url(settings.database_url))
    await blocker.execute("BEGIN; LOCK TABLE consumer_offsets IN ACCESS EXCLUSIVE MODE")
    return blocker


async def _until_waiting(blocker: asyncpg.Connection) -> None:
    for _ in range(200):
        if await blocker.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the batch never reached its offset write")


def _batch(settings: Settings) -> list[Message]:
    event = moved_in(person(), years_before(datetime.now(UTC), 1))
    return [Message(settings.events_topic, 0, 0, b"k", orjson.dumps(event))]


async def test_a_batch_fenced_by_the_new_owner_commits_nothing(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], assigned_worker: Worker
) -> None:
    await register_orgs(sessions)
    topic = settings.events_topic
    blocker = await _held_before_offsets(settings)
    batch = asyncio.create_task(assigned_worker.handle(_batch(settings)))
    await _until_waiting(blocker)
    # Meanwhile the partition moved: its new owner committed up to offset 5.
    await blocker.execute(
        "INSERT INTO consumer_offsets (group_id, topic, partition, cluster_id, next_offset)"
        " VALUES ($1, $2, 0, $3, 5)",
        settings.consumer_group,
        topic,
        assigned_worker.config.cluster_id,
    )
    await blocker.execute("COMMIT")
    await blocker.close()
    await asyncio.wait_for(batch, 30)

    assert await count(sessions, Event) == 0  # the event, its audit: all rolled back
    # and the worker now believes what is stored, not what it had processed
    assert assigned_worker.positions[(topic, 0)] == Position(assigned_worker.config.cluster_id, 5)


async def test_a_partition_revoked_mid_batch_is_not_brought_back(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], assigned_worker: Worker
) -> None:
    await register_orgs(sessions)
    topic = settings.events_topic
    blocker = await _held_before_offsets(settings)
    batch = asyncio.create_task(assigned_worker.handle(_batch(settings)))
    await _until_waiting(blocker)
    assigned_worker.on_revoked({TopicPartition(topic, 0)})
    await blocker.execute("ROLLBACK")
    await blocker.close()
    await asyncio.wait_for(batch, 30)

    # Nobody else had moved the stored offset, so the batch's work stands; but the worker
    # no longer owns partition 0 and must not track (or report lag for) it.
    assert await count(sessions, Event) == 1
    assert (topic, 0) not in assigned_worker.positions


async def test_a_split_batch_whose_first_half_is_fenced_never_runs_its_second_half(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], assigned_worker: Worker
) -> None:
    """The batch fails on a poison event (offset 3) and is split; meanwhile the partition
    moved on (its new owner stored offset 2), so the first half is fenced. The second half
    is stale: running it would commit offsets 2-3 again over the new owner's work."""
    await register_orgs(sessions)
    topic = settings.events_topic
    on = years_before(datetime.now(UTC), 1)
    events = [moved_in(person(), on) for _ in range(4)]
    await poison_trigger(sessions, f"NEW.event_id = '{events[3]['id']}'", "22023")
    async with sessions() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO consumer_offsets (group_id, topic, partition, cluster_id, next_offset)"
                " VALUES (:group, :topic, 0, :cluster, 2)"
            ),
            {
                "group": settings.consumer_group,
                "topic": topic,
                "cluster": assigned_worker.config.cluster_id,
            },
        )
    messages = [Message(topic, 0, i, b"k", orjson.dumps(e)) for i, e in enumerate(events)]

    assert not await assigned_worker.handle(messages)

    assert await count(sessions, Event) == 0
    assert await count(sessions, Rejection) == 0
    assert assigned_worker.positions[(topic, 0)] == Position(assigned_worker.config.cluster_id, 2)
