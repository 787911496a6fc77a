"""The fetch ahead: while a batch runs, the worker fetches and checks the next one. Those
records are used only if their partition was not sought meanwhile (assigned again, or
fenced and reloaded): the consumer then reads again from the stored offset, and records
fetched from the old position must not be processed, which would skip or repeat events."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.e2e.test_publish_to_alert import count
from tests.factories import moved_in, person, register_orgs, years_before

from lookout import kafka
from lookout.ingest.models import Event
from lookout.ingest.validation import Valid
from lookout.pipeline import check
from lookout.settings import Settings
from lookout.worker import Worker, _Fetched

pytestmark = pytest.mark.asyncio


async def _publish(settings: Settings, n: int) -> None:
    producer = AIOKafkaProducer(**kafka.producer_config(settings.kafka_bootstrap_servers))
    await producer.start()
    try:
        for _ in range(n):
            event = moved_in(person(), years_before(datetime.now(UTC), 1))
            await producer.send_and_wait(settings.events_topic, orjson.dumps(event), partition=0)
    finally:
        await producer.stop()


async def _fetch(worker: Worker, n: int) -> _Fetched:
    for _ in range(50):
        fetched = await worker._fetch_and_check()
        if fetched.messages:
            assert len(fetched.messages) == n
            return fetched
    raise AssertionError("nothing fetched")


async def test_records_fetched_ahead_are_checked_and_kept_while_the_partition_stands(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    assigned_worker: Worker,
) -> None:
    await register_orgs(sessions)
    await _publish(settings, 3)
    fetched = await _fetch(assigned_worker, 3)
    assert [m.offset for m in fetched.messages] == [0, 1, 2]
    assert all(isinstance(c, Valid) for c in fetched.checked)
    assert [c.content_hash for c in fetched.checked] == [  # type: ignore[union-attr]
        c.content_hash  # type: ignore[union-attr]
        for c in check(fetched.messages, assigned_worker.config)
    ]
    messages, checked = assigned_worker._current(fetched)
    assert messages == fetched.messages
    assert await assigned_worker.handle(messages, checked)
    assert await count(sessions, Event) == 3


async def test_records_fetched_ahead_are_dropped_when_their_partition_is_sought(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    assigned_worker: Worker,
) -> None:
    await register_orgs(sessions)
    await _publish(settings, 2)
    stale = await _fetch(assigned_worker, 2)
    # As after a fence or a new assignment: back to the stored offset (none committed).
    await assigned_worker.assign(TopicPartition(settings.events_topic, 0))
    assert assigned_worker._current(stale) == ([], [])
    again = await _fetch(assigned_worker, 2)
    assert [m.offset for m in again.messages] == [0, 1]
    assert await assigned_worker.handle(*assigned_worker._current(again))
    assert await count(sessions, Event) == 2
