"""Fixtures of the worker tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from lookout import kafka
from lookout.db import create_engine, session_factory
from lookout.settings import Settings
from lookout.worker import Worker


@pytest.fixture
async def assigned_worker(settings: Settings) -> AsyncIterator[Worker]:
    """A worker owning partition 0, driven by the test (no group: manual assignment; the
    tests' ``worker`` fixture runs a whole worker instead)."""
    await kafka.ensure_topics(settings.kafka_bootstrap_servers, {settings.events_topic: 4})
    worker = Worker(settings)
    engine = create_engine(settings.database_url, pool_size=2)
    worker._sessions = session_factory(engine)
    worker._config = await worker._pipeline_config(
        await kafka.cluster_id(settings.kafka_bootstrap_servers)
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    consumer.assign([TopicPartition(settings.events_topic, 0)])
    worker._consumer = consumer
    await worker.assign(TopicPartition(settings.events_topic, 0))
    yield worker
    await consumer.stop()
    await engine.dispose()
