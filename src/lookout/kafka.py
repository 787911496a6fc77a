"""Small shared Kafka helpers: topic creation, the cluster id, client configurations.

The same code talks to Apache Kafka in production and to the embedded Tansu broker
locally. Tansu supports neither idempotent producers nor transactions (aiokafka fails
at start with them on), so the producer configuration turns idempotence off and the
consumer reads uncommitted; topics are always created explicitly, never auto-created.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

__all__ = ["cluster_id", "consumer_config", "ensure_topics", "producer_config"]

log = structlog.get_logger(__name__)

_MAX_REPLICATION = 3


def _admin(bootstrap: str, request_timeout_ms: int = 30_000) -> Any:
    return AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="lookout-admin",
        request_timeout_ms=request_timeout_ms,
    )


async def cluster_id(bootstrap: str) -> str:
    """The cluster id the brokers report in their metadata (a new one per embedded start)."""
    admin = _admin(bootstrap)
    await admin.start()
    try:
        described: dict[str, Any] = await admin.describe_cluster()
    finally:
        await admin.close()
    return str(described.get("cluster_id") or "")


async def ensure_topics(
    bootstrap: str, topics: Mapping[str, int], *, timeout_s: float = 30.0
) -> None:
    """Create each topic (name → partition count) that does not exist yet, then wait for it.

    Replication factor is 1 on a single broker, else 3 capped at the broker count.
    Existing topics are left alone (a warning if they have fewer partitions than asked).
    Returns once the metadata shows every topic with a leader for each partition.
    """
    if not topics:
        return
    admin = _admin(bootstrap)
    await admin.start()
    try:
        described: dict[str, Any] = await admin.describe_cluster()
        brokers = len(described.get("brokers") or []) or 1
        replication = 1 if brokers == 1 else min(_MAX_REPLICATION, brokers)
        response = await admin.create_topics(
            [NewTopic(name, partitions, replication) for name, partitions in topics.items()]
        )
        for entry in response.to_object()["topic_errors"]:
            code = int(entry["error_code"])
            if code == 0:
                log.info("kafka.topic_created", topic=entry["topic"], replication=replication)
            elif code != TopicAlreadyExistsError.errno:
                error_class = for_code(code)
                raise error_class(
                    f"creating topic {entry['topic']!r}: {entry.get('error_message')}"
                )
        await _wait_for_topics(admin, topics, timeout_s)
    finally:
        await admin.close()


async def _wait_for_topics(admin: Any, topics: Mapping[str, int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        described: list[dict[str, Any]] = await admin.describe_topics(list(topics))
        pending: list[str] = []
        for topic in described:
            name = topic["topic"]
            partitions = topic.get("partitions") or []
            if topic["error_code"] != 0 or not partitions:
                pending.append(name)
                continue
            if any(p["leader"] < 0 for p in partitions):
                pending.append(name)
                continue
            if name in topics and len(partitions) < topics[name]:
                log.warning(
                    "kafka.topic_has_fewer_partitions",
                    topic=name,
                    partitions=len(partitions),
                    wanted=topics[name],
                )
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not ready after {timeout_s:.0f}s: {sorted(pending)}")
        await asyncio.sleep(0.1)


def producer_config(bootstrap: str, *, client_id: str = "lookout") -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaProducer``: acks=all, no idempotence (see module doc)."""
    return {
        "bootstrap_servers": bootstrap,
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": False,
        "linger_ms": 5,
        "compression_type": None,
    }


def consumer_config(
    bootstrap: str,
    group_id: str,
    *,
    session_timeout_ms: int = 10_000,
    heartbeat_interval_ms: int = 3_000,
    fetch_max_wait_ms: int = 50,
    max_poll_records: int = 2_000,
    client_id: str = "lookout",
) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaConsumer``: manual commits, from the earliest offset.

    The defaults match :class:`lookout.settings.Settings`; pass the settings' values.
    """
    return {
        "bootstrap_servers": bootstrap,
        "client_id": client_id,
        "group_id": group_id,
        "enable_auto_commit": False,
        # Lookout seeks every assigned partition itself (offsets live in PostgreSQL); an
        # offset the broker does not have is an error to stop on, never a silent reset.
        "auto_offset_reset": "none",
        "isolation_level": "read_uncommitted",
        "session_timeout_ms": session_timeout_ms,
        "heartbeat_interval_ms": heartbeat_interval_ms,
        "fetch_max_wait_ms": fetch_max_wait_ms,
        "max_poll_records": max_poll_records,
    }


async def log_ends(bootstrap: str, topic: str, start: Mapping[int, int]) -> dict[int, int]:
    """The log end of each partition from a fetch's high-water mark (-1 if unknown).

    Not ListOffsets: the bundled broker under-reports the log end there. Each partition
    is fetched from just below ``start`` (e.g. the committed offset)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, max(start.get(tp.partition, 0) - 1, 0))
        ends: dict[int, int] = {}
        for _ in range(10):
            await consumer.getmany(timeout_ms=200, max_records=1)
            for tp in tps:
                if (hw := consumer.highwater(tp)) is not None:
                    ends[tp.partition] = hw
            if len(ends) == len(tps):
                break
        return {tp.partition: ends.get(tp.partition, -1) for tp in tps}
    finally:
        await consumer.stop()
