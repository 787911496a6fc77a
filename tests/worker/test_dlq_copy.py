"""A batch's rejections are copied to the dead-letter topic while the next batch runs: the
batch returns before its copy is made, the copies reach the topic in commit order, and
the periodic sweep of rejections not yet copied waits for the copy in flight instead of
sending its rows a second time."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.e2e.test_publish_to_alert import count, topic_messages
from tests.factories import register_orgs

from lookout import kafka
from lookout.ingest.models import Rejection
from lookout.pipeline import Message
from lookout.settings import Settings
from lookout.worker import Worker

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def copying_worker(assigned_worker: Worker, settings: Settings) -> AsyncIterator[Worker]:
    """The assigned worker with a producer for its DLQ copies."""
    await kafka.ensure_topics(settings.kafka_bootstrap_servers, {settings.dlq_topic: 1})
    producer = AIOKafkaProducer(**kafka.producer_config(settings.kafka_bootstrap_servers))
    await producer.start()
    assigned_worker._producer = producer
    yield assigned_worker
    await assigned_worker.dlq_copied()
    await producer.stop()


def _junk(settings: Settings, offset: int) -> Message:
    return Message(settings.events_topic, 0, offset, b"junk", f"{{not json {offset}".encode())


async def test_the_copy_follows_the_batch_in_commit_order_and_the_sweep_does_not_repeat_it(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], copying_worker: Worker
) -> None:
    await register_orgs(sessions)
    assert await copying_worker.handle([_junk(settings, 0)])
    # The batch has committed and returned; its copy has not run yet.
    assert copying_worker._dlq_copy is not None
    assert not copying_worker._dlq_copy.done()
    assert await copying_worker.handle([_junk(settings, 1), _junk(settings, 2)])
    # At once, as the sweep runs between batches: it must wait for the copy in flight.
    await copying_worker.publish_pending_rejections()
    assert await count(sessions, Rejection, Rejection.dlq_published_at.is_(None)) == 0
    copies = await topic_messages(settings, settings.dlq_topic)
    assert [m.value for m in copies] == [b"{not json 0", b"{not json 1", b"{not json 2"]
