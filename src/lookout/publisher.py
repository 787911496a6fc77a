"""Publishing events to the events topic, keyed by the publisher's reference (``subject``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from lookout import kafka
from lookout.settings import Settings


async def publish_events(settings: Settings, events: Iterable[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(**kafka.producer_config(settings.kafka_bootstrap_servers))
    await producer.start()
    try:
        deliveries = []
        for event in events:
            subject = event.get("subject")
            deliveries.append(
                await producer.send(
                    settings.events_topic,
                    value=orjson.dumps(event),
                    key=subject.encode() if isinstance(subject, str) else None,
                )
            )
        await asyncio.gather(*deliveries)  # raises if any message was not acknowledged
    finally:
        await producer.stop()
