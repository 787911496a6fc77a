"""The worker: consume ``lookout.events`` in a consumer group and run each batch through
the pipeline in one PostgreSQL transaction, offsets included.

Offsets live in PostgreSQL, not in Kafka: on every assignment the worker seeks to the
stored offsets (a new broker cluster means a new log, read from its start). The offset
write is a compare-and-set, so a worker that lost a partition mid-batch cannot commit.
Retriable errors (database or broker unreachable, deadlock) back off and retry the same
batch; nothing is skipped. SIGTERM finishes the current batch, commits and leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import start_http_server
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lookout import kafka, metrics
from lookout.audit.actions import Action
from lookout.audit.service import WORKER, Entry, record
from lookout.db import create_engine, session_factory
from lookout.identity.service import MatchThresholds
from lookout.ingest import repository as ingest
from lookout.ingest.catalogue import Catalogue
from lookout.ingest.repository import Position
from lookout.ingest.validation import Reason
from lookout.logging import safe_error
from lookout.pipeline import Fenced, Message, PipelineConfig, RejectionOut, process_batch
from lookout.rules.model import load_rules
from lookout.settings import Settings

log = structlog.get_logger("lookout.worker")

# How often the worker re-sends rejections whose DLQ copy failed (or whose worker died).
DLQ_SWEEP_INTERVAL_S = 30.0

# 23505: another worker committed the same event first; on retry it is a duplicate.
RETRIABLE_SQLSTATES = {
    "23505",
    "40001",
    "40P01",
    "57P01",
    "57P02",
    "57P03",
    "08000",
    "08003",
    "08006",
}


def _retriable(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | KafkaError | OSError | ConnectionError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        code = getattr(exc.orig, "sqlstate", None) or getattr(
            getattr(exc.orig, "__cause__", None), "sqlstate", None
        )
        return code in RETRIABLE_SQLSTATES
    return False


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.positions: dict[tuple[str, int], Position | None] = {}
        self.stopping = asyncio.Event()
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._config: PipelineConfig | None = None

    @property
    def config(self) -> PipelineConfig:
        assert self._config is not None
        return self._config

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        assert self._sessions is not None
        return self._sessions

    async def _pipeline_config(self, cluster_id: str) -> PipelineConfig:
        s = self.settings
        return PipelineConfig(
            catalogue=Catalogue.load(s.schemas_dir),
            rules=load_rules(s.rules_dir),
            group_id=s.consumer_group,
            cluster_id=cluster_id,
            max_event_bytes=s.max_event_bytes,
            max_future_skew=timedelta(seconds=s.max_future_skew_s),
            alerting_horizon=timedelta(days=s.alerting_horizon_days),
            timezone=ZoneInfo(s.timezone),
            clock=lambda: datetime.now(UTC),
            identity=MatchThresholds(
                auto_link_at=s.identity_auto_link_at,
                possible_at=s.identity_possible_match_at,
                max_candidates=s.identity_max_candidates,
            ),
        )

    async def run(self) -> None:
        s = self.settings
        engine = create_engine(s.database_url, pool_size=2)
        self._sessions = session_factory(engine)
        await kafka.ensure_topics(
            s.kafka_bootstrap_servers,
            {s.events_topic: s.events_partitions, s.dlq_topic: s.events_partitions},
        )
        self._config = await self._pipeline_config(
            await kafka.cluster_id(s.kafka_bootstrap_servers)
        )
        self._producer = AIOKafkaProducer(**kafka.producer_config(s.kafka_bootstrap_servers))
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            **kafka.consumer_config(
                s.kafka_bootstrap_servers,
                group_id=s.consumer_group,
                session_timeout_ms=s.kafka_session_timeout_ms,
                heartbeat_interval_ms=s.kafka_heartbeat_interval_ms,
                fetch_max_wait_ms=s.kafka_fetch_max_wait_ms,
                max_poll_records=s.kafka_max_poll_records,
            )
        )
        self._consumer.subscribe([s.events_topic], listener=_Rebalance(self))
        await self._consumer.start()
        log.info(
            "worker started",
            topic=s.events_topic,
            group=s.consumer_group,
            rules=len(self.config.rules),
        )
        try:
            loop = asyncio.get_running_loop()
            next_sweep = 0.0
            while not self.stopping.is_set():
                if loop.time() >= next_sweep:
                    await self.publish_pending_rejections()
                    next_sweep = loop.time() + DLQ_SWEEP_INTERVAL_S
                records = await self._consumer.getmany(
                    timeout_ms=200, max_records=s.worker_batch_max
                )
                messages = [
                    Message(tp.topic, tp.partition, r.offset, r.key, r.value)
                    for tp, batch in sorted(records.items(), key=lambda kv: kv[0].partition)
                    if (tp.topic, tp.partition) in self.positions
                    for r in batch
                ]
                if messages:
                    await self.handle(messages)
        finally:
            await self._consumer.stop()
            await self._producer.stop()
            await engine.dispose()
            log.info("worker stopped")

    async def handle(self, messages: Sequence[Message]) -> None:
        """Process one batch until it commits (or is fenced); then copy rejections to the DLQ."""
        delay = 0.2
        while True:
            started = asyncio.get_running_loop().time()
            try:
                async with self.sessions() as session, session.begin():
                    result = await process_batch(
                        session, messages, self.config, dict(self.positions)
                    )
            except Fenced as exc:
                metrics.FENCED.inc()
                log.warning("batch fenced: partition moved on", partition=str(exc))
                await self._reload_positions({(m.topic, m.partition) for m in messages})
                return
            except Exception as exc:
                if not _retriable(exc):
                    log.error("batch failed", error=safe_error(exc))
                    raise
                metrics.BATCH_RETRIES.labels(safe_error(exc)).inc()
                log.warning(
                    "batch failed, retrying", error=safe_error(exc), delay_s=round(delay, 2)
                )
                await asyncio.sleep(delay + random.uniform(0, delay / 2))  # noqa: S311
                delay = min(delay * 2, self.settings.retry_backoff_max_s)
                continue
            break
        for m in messages:
            key = (m.topic, m.partition)
            self.positions[key] = Position(
                self.config.cluster_id,
                max(m.offset + 1, (self.positions.get(key) or Position("", 0)).next_offset),
            )
        metrics.BATCH_SIZE.observe(len(messages))
        metrics.BATCH_SECONDS.observe(asyncio.get_running_loop().time() - started)
        log.info(
            "batch committed",
            messages=len(messages),
            accepted=result.accepted,
            duplicates=result.duplicates,
            rejected=len(result.rejections),
            alerts=len(result.alerts),
        )
        await self.publish_rejections(result.rejections)

    async def publish_rejections(self, rejections: Sequence[RejectionOut]) -> None:
        """Copy rejections to the DLQ topic (at least once), then mark them published."""
        if not rejections or self._producer is None:
            return
        try:
            deliveries = []
            for r in rejections:
                deliveries.append(
                    await self._producer.send(
                        self.settings.dlq_topic,
                        value=r.message.value,
                        key=r.message.key,
                        headers=[
                            ("reason", r.reason.value.encode()),
                            ("rejection-id", str(r.id).encode()),
                            ("original-topic", r.message.topic.encode()),
                            ("original-partition", str(r.message.partition).encode()),
                            ("original-offset", str(r.message.offset).encode()),
                        ],
                    )
                )
            await asyncio.gather(*deliveries)
            async with self.sessions() as session, session.begin():
                await ingest.mark_published(session, [r.id for r in rejections])
            metrics.DLQ_PUBLISHED.inc(len(rejections))
        except Exception as exc:  # the rows stay unpublished; the periodic sweep retries
            log.warning("dlq copy deferred", error=safe_error(exc), count=len(rejections))

    async def publish_pending_rejections(self) -> None:
        """Rejections whose DLQ copy failed, or whose worker died before making it."""
        async with self.sessions() as session:
            pending = await ingest.unpublished_rejections(session, 10_000)
        await self.publish_rejections(
            [
                RejectionOut(
                    r.id,
                    Reason(r.reason),
                    Message(r.kafka_topic, r.kafka_partition, r.kafka_offset, r.kafka_key, r.raw),
                )
                for r in pending
            ]
        )

    async def _reload_positions(self, keys: set[tuple[str, int]]) -> None:
        """After being fenced: forget what we thought and seek to what is stored."""
        assert self._consumer is not None
        for topic, partition in keys:
            if (topic, partition) in self.positions:
                await self.assign(TopicPartition(topic, partition))

    async def assign(self, tp: TopicPartition) -> None:
        """Seek ``tp`` to its stored offset; a new cluster (or none stored) reads from the start."""
        assert self._consumer is not None
        cluster = self.config.cluster_id
        async with self.sessions() as session, session.begin():
            stored = (
                await ingest.stored_positions(
                    session, self.settings.consumer_group, tp.topic, [tp.partition]
                )
            ).get(tp.partition)
            if stored is not None and stored.cluster_id == cluster:
                self._consumer.seek(tp, stored.next_offset)
            else:
                # Not seek_to_beginning(): awaited inside the rebalance listener, it waits for
                # the fetcher, which waits for the rebalance to finish.
                start = (await self._consumer.beginning_offsets([tp]))[tp]
                self._consumer.seek(tp, start)
                if stored is not None:
                    # Record the new log now, so the stored offset never points past its end.
                    fresh = Position(cluster, start)
                    moved = await ingest.compare_and_set_offset(
                        session, self.settings.consumer_group, tp.topic, tp.partition, stored, fresh
                    )
                    stored = fresh if moved else None
                    metrics.NEW_CLUSTER.inc()
                    log.warning(
                        "new broker log: reading partition from its start", partition=tp.partition
                    )
                    await record(
                        session,
                        WORKER,
                        [
                            Entry(
                                Action.log_new_cluster,
                                "partition",
                                f"{tp.topic}[{tp.partition}]",
                                details={"cluster": cluster, "start_offset": start},
                            )
                        ],
                    )
        self.positions[(tp.topic, tp.partition)] = stored

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        cluster = await kafka.cluster_id(self.settings.kafka_bootstrap_servers)
        if cluster != self.config.cluster_id:
            self._config = await self._pipeline_config(cluster)
        for tp in sorted(assigned, key=lambda t: t.partition):
            await self.assign(tp)
        metrics.WORKER_UP.set(len(self.positions))
        log.info("partitions assigned", partitions=sorted(tp.partition for tp in assigned))

    def on_revoked(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            self.positions.pop((tp.topic, tp.partition), None)
        metrics.WORKER_UP.set(len(self.positions))


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.worker.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.worker.on_assigned(assigned)


def run(settings: Settings) -> None:
    """Entry point of ``lookout worker``: metrics port, signal handling, the loop."""
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, addr="0.0.0.0")  # noqa: S104

    async def main() -> None:
        worker = Worker(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stopping.set)
        with contextlib.suppress(asyncio.CancelledError):
            await worker.run()

    asyncio.run(main())
