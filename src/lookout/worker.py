"""The worker: consume ``lookout.events`` in a consumer group and run each batch through
the pipeline in one PostgreSQL transaction, offsets included.

Offsets live in PostgreSQL, not in Kafka: on every assignment the worker seeks to the
stored offsets (a new broker cluster means a new log, read from its start), from its main
loop, never in the rebalance listener (see ``on_assigned``). The offset
write is a compare-and-set, so a worker that lost a partition mid-batch cannot commit.
Retriable errors (database or broker unreachable, deadlock) back off and retry the same
batch; nothing is skipped. An event that fails on its own with an error retrying does not
cure is isolated by splitting its batch and rejected (``processing_failed``, to the DLQ);
an error of the environment stops the worker. SIGTERM finishes the current batch, commits
and leaves. A worker that is behind fetches and checks the next batch while the current
one waits on PostgreSQL (docs/architecture.md, "One batch, one transaction"). A batch's
rejections are copied to the DLQ topic while the next batch runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

import asyncpg
import structlog
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import NoOffsetForPartitionError, OffsetOutOfRangeError
from prometheus_client import start_http_server
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lookout import kafka, metrics
from lookout.alerts import repository as alerts_repository
from lookout.audit.actions import Action
from lookout.audit.service import WORKER, Entry, record
from lookout.db import create_engine, plain_url, session_factory
from lookout.errors import transient
from lookout.identity.service import MatchThresholds
from lookout.ingest import repository as ingest
from lookout.ingest.catalogue import Catalogue
from lookout.ingest.repository import Position
from lookout.ingest.validation import Invalid, Reason, Valid
from lookout.logging import safe_error, safe_traceback, sqlstate
from lookout.pipeline import (
    BatchResult,
    Fenced,
    Message,
    PipelineConfig,
    RejectionOut,
    check,
    process_batch,
    reject_unprocessable,
)
from lookout.rules import repository as rules_repository
from lookout.rules import service as rules_service
from lookout.rules.model import Rule, load_rules
from lookout.rules.models import RuleSet
from lookout.runtime import tune_gc
from lookout.settings import Settings

log = structlog.get_logger("lookout.worker")
T = TypeVar("T")

# How often the worker re-sends rejections whose DLQ copy failed (or whose worker died)
# and refreshes the open-alerts gauge.
HOUSEKEEPING_INTERVAL_S = 30.0
# A start-up step that takes longer is abandoned and retried (and logged).
STARTUP_STEP_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0  # for leaving the consumer group on SIGTERM
# A message that fails alone with an error it may cause is tried this often before it is
# rejected as processing_failed.
LONE_EVENT_ATTEMPTS = 3
# Messages checked at a time by the fetch ahead (a few ms of CPU, the longest a reply from
# PostgreSQL to the current batch waits for it).
CHECK_CHUNK = 64


# SQLSTATE classes that one event's data can cause (a value the database refuses, a
# constraint, a trigger's exception): the worker isolates the event and rejects it. Any other
# database error (privileges, missing objects, resources) is the environment's: the worker
# stops, and nothing is rejected.
EVENT_SPECIFIC_SQLSTATE_CLASSES = {"22", "23", "P0"}


def _event_specific(exc: BaseException) -> bool:
    """A non-retriable error that the events of a batch, not the environment, may cause:
    a defect in Lookout's code met by some input (any non-database exception) or a database
    error of an event-specific class."""
    if isinstance(exc, MemoryError | Fenced):  # Fenced: the partition moved, not a failure
        return False
    if isinstance(exc, DBAPIError | asyncpg.PostgresError):
        code = sqlstate(exc)
        return code is not None and code[:2] in EVENT_SPECIFIC_SQLSTATE_CLASSES
    return True


# Fetched records by partition, and the partitions' assignment generations then.
_Records = tuple[
    dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]], dict[tuple[str, int], int]
]


@dataclass(frozen=True, slots=True)
class _Fetched:
    """Fetched records: the messages, each one's own checks, and the partitions'
    assignment generations when the consumer returned them."""

    messages: list[Message]
    checked: list[Valid | Invalid]
    generations: dict[tuple[str, int], int]


class StopRequested(BaseException):
    """SIGTERM while retrying. A BaseException, like ``asyncio.CancelledError``, so that no
    ``except Exception`` on the way (a batch's error handling) takes it for a failure."""


def _retriable(exc: BaseException) -> bool:
    # 23505 (unique violation): another worker committed the same event first; on retry it
    # is a duplicate.
    return transient(exc) or sqlstate(exc) == "23505"


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.positions: dict[tuple[str, int], Position | None] = {}
        self.stopping = asyncio.Event()
        self.started = False  # set once connected and subscribed; SIGTERM before: cancel
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._config: PipelineConfig | None = None
        self.rule_set_id: int | None = None
        self._rules_changed = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        # Partitions whose stored offset is beyond the log end, with that offset: they stay
        # paused until an operator moves the stored offset (``lookout offsets resume``).
        self.stopped: dict[tuple[str, int], int] = {}
        # Bumped each time a partition is assigned or revoked: a batch that was running
        # meanwhile must not write its idea of the position over the new owner's.
        self.assignments: dict[tuple[str, int], int] = {}
        # Assigned, paused, and not yet sought to their stored offsets (``place_assigned``).
        self.unplaced: set[tuple[str, int]] = set()
        # The DLQ copy of the last batch's rejections, made while the next batch runs.
        self._dlq_copy: asyncio.Task[None] | None = None

    @property
    def config(self) -> PipelineConfig:
        assert self._config is not None
        return self._config

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        assert self._sessions is not None
        return self._sessions

    async def _latest_rule_set(self) -> RuleSet | None:
        async with self.sessions() as session:
            return await rules_repository.latest(session)

    def _rules_of(self, rule_set: RuleSet | None) -> list[Rule]:
        """The rules of an applied rule set; until one is applied, the files in rules_dir."""
        if rule_set is None:
            return load_rules(self.settings.rules_dir)
        return rules_service.rules_of(rule_set)

    async def refresh_rules(self) -> None:
        """Switch to a newly applied rule set between batches (atomically: a batch keeps
        the configuration it started with). Compiles only a set it has not got (this runs
        in the batch loop, every housekeeping round)."""
        self._rules_changed.clear()
        current = await self._latest_rule_set()
        rule_set_id = current.id if current else None
        if rule_set_id != self.rule_set_id:
            rules = self._rules_of(current)
            self.rule_set_id = rule_set_id
            self._config = replace(self.config, rules=rules)
            log.info("rule set switched", rule_set=rule_set_id, rules=len(rules))

    async def _listen_for_rules(self) -> None:
        """LISTEN for ``lookout rules apply``; housekeeping polls too, in case it drops."""
        if self._listener is not None and not self._listener.is_closed():
            return
        try:
            self._listener = await asyncpg.connect(plain_url(self.settings.database_url))
            await self._listener.add_listener(
                rules_repository.CHANNEL, lambda *_: self._rules_changed.set()
            )
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("rules listener not connected", error=safe_error(exc))

    async def _pipeline_config(self, cluster_id: str) -> PipelineConfig:
        s = self.settings
        if self._config is not None:
            return replace(self._config, cluster_id=cluster_id)
        current = await self._latest_rule_set()
        self.rule_set_id, rules = (current.id if current else None), self._rules_of(current)
        return PipelineConfig(
            catalogue=Catalogue.load(s.schemas_dir),
            rules=rules,
            group_id=s.consumer_group,
            cluster_id=cluster_id,
            max_event_bytes=s.max_event_bytes,
            max_future_skew=timedelta(seconds=s.max_future_skew_s),
            alerting_horizon=timedelta(days=s.alerting_horizon_days),
            timezone=ZoneInfo(s.timezone),
            clock=lambda: datetime.now(UTC),
            review_after=timedelta(days=s.alert_review_days),
            identity=MatchThresholds(
                auto_link_at=s.identity_auto_link_at,
                possible_at=s.identity_possible_match_at,
                max_candidates=s.identity_max_candidates,
            ),
        )

    async def _back_off(self, delay: float) -> float:
        """Wait ``delay`` (plus jitter) before a retry and return the next delay. A stop
        request ends the wait and the retrying: nothing uncommitted is kept, and the stored
        offsets say where the next owner starts."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self.stopping.wait(),
                timeout=delay + random.uniform(0, delay / 2),  # noqa: S311
            )
        if self.stopping.is_set():
            raise StopRequested
        return min(delay * 2, self.settings.retry_backoff_max_s)

    async def retrying(
        self, step: str, attempt: Callable[[], Awaitable[T]], *, timeout_s: float | None = None
    ) -> T:
        """Run ``attempt`` until it succeeds, backing off while the database or the broker
        is unreachable (a worker started during an outage waits for it; it never exits).
        With ``timeout_s``, an attempt that hangs (a broker that accepts the connection but
        does not answer) is abandoned and tried again, logged like any other failure."""
        delay = 0.2
        while True:
            try:
                async with asyncio.timeout(timeout_s):
                    return await attempt()
            except Exception as exc:
                if not _retriable(exc):
                    raise
                log.warning("retrying", step=step, error=safe_error(exc), delay_s=round(delay, 2))
                delay = await self._back_off(delay)

    async def _start_clients(self) -> None:
        """Connect the producer (DLQ copies) and the consumer, then subscribe; on any
        failure stop both, so that a retry starts from clean clients."""
        s = self.settings
        producer = AIOKafkaProducer(**kafka.producer_config(s.kafka_bootstrap_servers))
        consumer = AIOKafkaConsumer(
            **kafka.consumer_config(
                s.kafka_bootstrap_servers,
                group_id=s.consumer_group,
                session_timeout_ms=s.kafka_session_timeout_ms,
                heartbeat_interval_ms=s.kafka_heartbeat_interval_ms,
                fetch_max_wait_ms=s.kafka_fetch_max_wait_ms,
                max_poll_records=s.kafka_max_poll_records,
            )
        )
        try:
            await producer.start()
            await consumer.start()
        except BaseException:
            for client in (consumer, producer):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.stop(), timeout=5)
            raise
        self._producer, self._consumer = producer, consumer
        # Subscribing after start(): start() would otherwise wait for the first assignment,
        # which during a rebalance storm can take long. The group is joined in the
        # background; partitions arrive through the listener ("partitions assigned").
        consumer.subscribe([s.events_topic], listener=_Rebalance(self))

    async def run(self) -> None:
        engine = create_engine(self.settings.database_url, pool_size=2)
        self._sessions = session_factory(engine)
        try:
            await self._run()
        except StopRequested:
            log.info("stop requested while retrying: left uncommitted work to the next owner")
        finally:
            await engine.dispose()
            log.info("worker stopped")

    async def _run(self) -> None:
        s = self.settings
        await self.retrying(
            "create topics",
            lambda: kafka.ensure_topics(
                s.kafka_bootstrap_servers,
                {s.events_topic: s.events_partitions, s.dlq_topic: s.events_partitions},
            ),
            timeout_s=STARTUP_STEP_TIMEOUT_S,
        )
        cluster = await self.retrying(
            "read cluster id",
            lambda: kafka.cluster_id(s.kafka_bootstrap_servers),
            timeout_s=STARTUP_STEP_TIMEOUT_S,
        )
        self._config = await self.retrying(
            "load rules", lambda: self._pipeline_config(cluster), timeout_s=STARTUP_STEP_TIMEOUT_S
        )
        for reason in Reason:  # so that increase() sees each first rejection
            metrics.REJECTIONS.labels(reason.value)
        for rule in self.config.rules:
            metrics.ALERTS_UNDELIVERABLE.labels(rule.id)
        for why in ("retracted", "falsified"):
            metrics.ALERTS_MARKED_FOR_REVIEW.labels(why)
        await self.retrying(
            "connect to the broker", self._start_clients, timeout_s=STARTUP_STEP_TIMEOUT_S
        )
        assert self._consumer is not None
        assert self._producer is not None
        self.started = True
        log.info(
            "worker started",
            topic=s.events_topic,
            group=s.consumer_group,
            rules=len(self.config.rules),
        )
        # The next batch, fetched and checked while the current one waits on PostgreSQL
        # (when behind).
        ahead: asyncio.Task[_Fetched] | None = None
        try:
            loop = asyncio.get_running_loop()
            next_sweep = next_resume_check = 0.0
            while not self.stopping.is_set():
                if loop.time() >= next_sweep:
                    await self.retrying("housekeeping", self.housekeeping)
                    next_sweep = loop.time() + HOUSEKEEPING_INTERVAL_S
                if self._rules_changed.is_set():
                    await self.retrying("switch rules", self.refresh_rules)
                if self.unplaced:
                    await self.retrying("seek to the stored offset", self.place_assigned)
                if self.stopped and loop.time() >= next_resume_check:
                    await self.retrying("resume partitions", self.resume_moved_partitions)
                    next_resume_check = loop.time() + 2.0
                try:
                    fetched = await (ahead if ahead is not None else self._fetch_and_check())
                except OffsetOutOfRangeError as exc:
                    for tp, offset in exc.args[0].items():
                        await self.stop_partition(tp, offset, None)
                    continue
                except NoOffsetForPartitionError:
                    # A partition assigned but not yet placed (paused, it has no position
                    # for aiokafka): place_assigned seeks it at the top of the loop.
                    await asyncio.sleep(0.05)
                    continue
                finally:
                    ahead = None
                messages, checked = self._current(fetched)
                if len(fetched.messages) >= self.settings.worker_batch_max:
                    # Behind (a full batch, more waiting): fetch the next while this one
                    # runs. A worker keeping up fetches after it, so that the next batch
                    # takes everything that arrived meanwhile, not the first few records.
                    ahead = asyncio.create_task(self._fetch_and_check())
                if messages:
                    await self.handle(messages, checked)
                await self.check_log_ends()
                self.observe_lag()
        finally:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(BaseException):  # not processed: nothing to keep
                    await ahead
            # Leaving the group can wait on a rebalance in progress (a member that joined
            # in the background): bounded, as the offsets are in PostgreSQL and the broker
            # expires a member that did not leave after the session timeout.
            try:
                await asyncio.wait_for(self._consumer.stop(), timeout=STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("leaving the consumer group timed out", timeout_s=STOP_TIMEOUT_S)
            with contextlib.suppress(TimeoutError):  # else the next start's sweep copies them
                await asyncio.wait_for(self.dlq_copied(), timeout=STOP_TIMEOUT_S)
            await self._producer.stop()
            if self._listener is not None:
                await self._listener.close()

    async def _fetch(self) -> _Records:
        """The next records (waiting at most 200 ms for them), or none once a stop is
        requested: while a rebalance is in progress ``getmany`` waits for the assignment
        whatever its timeout, which in a rebalance storm can outlast any grace period.
        With them, the partitions' assignment generations as they were returned."""
        fetch = asyncio.ensure_future(self._poll())
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({fetch, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # also when this fetch itself is cancelled (a fetch ahead, at a stop)
            stop.cancel()
            if not fetch.done():
                fetch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fetch
        if fetch.cancelled():  # a stop was requested first
            return {}, {}
        return fetch.result()

    async def _poll(self) -> _Records:
        assert self._consumer is not None
        records = await self._consumer.getmany(
            timeout_ms=200, max_records=self.settings.worker_batch_max
        )
        # Read in the same step as getmany returns (no other task runs in between). The
        # records are from each partition's position at that moment, which a seek made
        # while getmany waited (the rebalance listener's) has already moved; only a seek
        # after this makes them stale.
        return records, dict(self.assignments)

    async def _fetch_and_check(self) -> _Fetched:
        """The next records, as messages, with the outcome of each one's own checks
        (``pipeline.check``). Run as a task beside the current batch, the checks take the
        time that batch spends waiting on PostgreSQL: they go a few messages at a time,
        letting the batch go on whenever PostgreSQL has answered."""
        records, generations = await self._fetch()
        messages = [
            Message(tp.topic, tp.partition, r.offset, r.key, r.value)
            for tp, batch in sorted(records.items(), key=lambda kv: kv[0].partition)
            for r in batch
        ]
        checked: list[Valid | Invalid] = []
        for start in range(0, len(messages), CHECK_CHUNK):
            checked += check(messages[start : start + CHECK_CHUNK], self.config)
            await asyncio.sleep(0)
        return _Fetched(messages, checked, generations)

    def _current(self, fetched: _Fetched) -> tuple[list[Message], list[Valid | Invalid]]:
        """The fetched messages of partitions still this worker's, read from where it
        stands: a partition sought since the consumer returned them (assigned again,
        fenced and reloaded, resumed) has its records dropped, and the consumer reads them
        again from the new position. (A seek before they were returned is not one: they
        are from its position, and dropping them would skip them.)"""
        kept = [
            (m, c)
            for m, c in zip(fetched.messages, fetched.checked, strict=True)
            if (key := (m.topic, m.partition)) in self.positions
            and key not in self.stopped
            and self.assignments.get(key, 0) == fetched.generations.get(key, 0)
        ]
        return [m for m, _ in kept], [c for _, c in kept]

    async def handle(
        self, messages: Sequence[Message], checked: Sequence[Valid | Invalid] | None = None
    ) -> bool:
        """Process one batch until it commits (or is fenced); then copy rejections to the DLQ.
        False when fenced: the partition moved on, and the messages are stale. ``checked``:
        the messages' outcomes of ``pipeline.check``, if known."""
        ranges: dict[tuple[str, int], tuple[int, int]] = {}
        for m in messages:
            first, last = ranges.get((m.topic, m.partition), (m.offset, m.offset))
            ranges[(m.topic, m.partition)] = (min(first, m.offset), max(last, m.offset))
        offsets = ",".join(f"{p}:{a}-{b}" for (_, p), (a, b) in sorted(ranges.items()))
        with structlog.contextvars.bound_contextvars(topic=messages[0].topic, offsets=offsets):
            return await self._handle(messages, checked, ranges)

    async def _handle(
        self,
        messages: Sequence[Message],
        checked: Sequence[Valid | Invalid] | None,
        ranges: dict[tuple[str, int], tuple[int, int]],
    ) -> bool:
        generation = {key: self.assignments.get(key, 0) for key in ranges}
        started = asyncio.get_running_loop().time()
        try:
            result = await self._process(messages, checked)
        except Fenced as exc:
            metrics.FENCED.inc()
            log.warning("batch fenced: partition moved on", partition=str(exc))
            await self._reload_positions({(m.topic, m.partition) for m in messages})
            return False
        except Exception as exc:
            if len(messages) == 1 or not _event_specific(exc):
                log.error("batch failed", error=safe_error(exc), where=safe_traceback(exc))
                raise
            # Halves keep each partition's order: the list is sorted by partition and
            # offset, and the first half commits before the second starts. A fenced first
            # half makes the second stale (the consumer was sought back to the stored
            # offset), so the second half is then never run.
            log.warning("batch failed; splitting it", error=safe_error(exc))
            metrics.BATCH_SPLITS.inc()
            half = len(messages) // 2
            first, second = (checked[:half], checked[half:]) if checked else (None, None)
            return await self.handle(messages[:half], first) and await self.handle(
                messages[half:], second
            )
        for key, (_, last) in ranges.items():
            # Revoked (or revoked and assigned again) while the batch ran: the listener has
            # dropped or re-read the stored position; keep what it did.
            if self.assignments.get(key, 0) == generation[key]:
                self.positions[key] = Position(self.config.cluster_id, last + 1)
        now = datetime.now(UTC)
        for raised in result.alerts:
            metrics.EVENT_TO_ALERT_SECONDS.observe((now - raised.trigger_time).total_seconds())
        for source in result.sources:
            metrics.SOURCE_LAST_EVENT.labels(source).set(now.timestamp())
        seconds = asyncio.get_running_loop().time() - started
        metrics.BATCH_SIZE.observe(len(messages))
        metrics.BATCH_SECONDS.observe(seconds)
        log.info(
            "batch committed",
            messages=len(messages),
            accepted=result.accepted,
            duplicates=result.duplicates,
            rejected=len(result.rejections),
            alerts=len(result.alerts),
            seconds=round(seconds, 3),  # from the batch's start to its commit
        )
        if result.rejections:
            await self.dlq_copied()  # one at a time: dlq_copied() then covers every copy
            self._dlq_copy = asyncio.create_task(self.publish_rejections(result.rejections))
        return True

    async def _process(
        self, messages: Sequence[Message], checked: Sequence[Valid | Invalid] | None
    ) -> BatchResult:
        """``process_batch`` in one transaction. A message alone that keeps failing with an
        error it may cause (``_event_specific``) is rejected instead, after a few attempts
        (a passing cause, such as a race with another worker, gets its chance)."""
        attempt = 1
        while True:
            try:
                return await self._commit(
                    lambda session: process_batch(
                        session, messages, self.config, dict(self.positions), checked
                    )
                )
            except Fenced:
                raise
            except Exception as exc:
                if len(messages) > 1 or not _event_specific(exc):
                    raise
                error = safe_error(exc)
                if attempt < LONE_EVENT_ATTEMPTS:
                    log.warning("event failed on its own; trying again", error=error)
                    await self._back_off(0.2 * 2**attempt)
                    attempt += 1
                    continue
                log.error(
                    "event failed on its own; rejected to the dead-letter topic",
                    error=error,
                    where=safe_traceback(exc),
                )
                return await self._commit(
                    functools.partial(
                        reject_unprocessable,
                        message=messages[0],
                        error=error,
                        config=self.config,
                        positions=dict(self.positions),
                    )
                )

    async def _commit(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction; retry retriable errors with backoff until it
        commits. ``Fenced`` and other errors propagate (rolled back)."""
        delay = 0.2
        while True:
            try:
                async with self.sessions() as session, session.begin():
                    return await work(session)
            except Fenced:
                raise
            except Exception as exc:
                if not _retriable(exc):
                    raise
                metrics.BATCH_RETRIES.labels(safe_error(exc)).inc()
                log.warning(
                    "batch failed, retrying", error=safe_error(exc), delay_s=round(delay, 2)
                )
                delay = await self._back_off(delay)

    async def check_log_ends(self) -> None:
        """With the same broker cluster, a stored offset beyond the log end (as the fetch
        high-water mark shows it) means the log lost records or is not the one the offset
        belongs to: stop the partition and tell the operator; never skip or reset."""
        assert self._consumer is not None
        for (topic, partition), position in list(self.positions.items()):
            if (topic, partition) in self.stopped or position is None:
                continue
            if position.cluster_id != self.config.cluster_id:
                continue
            tp = TopicPartition(topic, partition)
            highwater = self._consumer.highwater(tp)
            if highwater is not None and position.next_offset > highwater:
                await self.stop_partition(tp, position.next_offset, highwater)

    async def stop_partition(self, tp: TopicPartition, offset: int, log_end: int | None) -> None:
        assert self._consumer is not None
        self._consumer.pause(tp)
        self.stopped[(tp.topic, tp.partition)] = offset
        metrics.PARTITION_STOPPED.labels(tp.topic, str(tp.partition)).set(1)
        log.error(
            "partition stopped: stored offset beyond the log end; see `lookout offsets`",
            partition=tp.partition,
            stored_offset=offset,
            log_end=log_end,
        )
        async with self.sessions() as session, session.begin():
            await record(
                session,
                WORKER,
                [
                    Entry(
                        Action.partition_stopped,
                        "partition",
                        f"{tp.topic}[{tp.partition}]",
                        outcome="stopped",
                        details={"stored_offset": offset, "log_end": log_end},
                    )
                ],
            )

    async def resume_moved_partitions(self) -> None:
        """Resume stopped partitions whose stored offset an operator has moved."""
        assert self._consumer is not None
        for (topic, partition), offset in list(self.stopped.items()):
            async with self.sessions() as session:
                stored = (
                    await ingest.stored_positions(
                        session, self.settings.consumer_group, topic, [partition]
                    )
                ).get(partition)
            if stored is None or stored.next_offset == offset:
                continue
            tp = TopicPartition(topic, partition)
            del self.stopped[(topic, partition)]
            self.positions[(topic, partition)] = stored
            self.assignments[(topic, partition)] = self.assignments.get((topic, partition), 0) + 1
            self._consumer.seek(tp, stored.next_offset)
            self._consumer.resume(tp)
            metrics.PARTITION_STOPPED.labels(topic, str(partition)).set(0)
            log.warning("partition resumed", partition=partition, offset=stored.next_offset)

    async def housekeeping(self) -> None:
        await self.resume_moved_partitions()
        await self._listen_for_rules()
        await self.refresh_rules()
        await self.publish_pending_rejections()
        try:
            async with self.sessions() as session:
                counts = await alerts_repository.open_alert_counts(session)
        except Exception as exc:
            log.warning("open alerts gauge not refreshed", error=safe_error(exc))
            return
        metrics.OPEN_ALERTS.clear()
        for severity, age, count in counts:
            metrics.OPEN_ALERTS.labels(severity, age).set(count)

    def observe_lag(self) -> None:
        """Lag per partition: log end from the fetch high-water mark (the bundled broker's
        ListOffsets under-reports it) minus the offset committed in PostgreSQL."""
        assert self._consumer is not None
        for (topic, partition), position in self.positions.items():
            highwater = self._consumer.highwater(TopicPartition(topic, partition))
            if highwater is None:
                continue
            committed = (
                position.next_offset
                if position and position.cluster_id == self.config.cluster_id
                else 0
            )
            metrics.CONSUMER_LAG.labels(topic, str(partition)).set(max(highwater - committed, 0))

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

    async def dlq_copied(self) -> None:
        """Wait for the DLQ copy in progress, if any. A batch does not wait for its own
        copy (about 10 ms: the producer's linger, the broker's acknowledgement, the
        ``dlq_published_at`` commit); the next batch runs meanwhile."""
        if self._dlq_copy is not None:
            await self._dlq_copy  # publish_rejections catches and logs its failures

    async def publish_pending_rejections(self) -> None:
        """Rejections whose DLQ copy failed, or whose worker died before making it."""
        await self.dlq_copied()  # its rows are not pending, only not yet marked
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

    async def place_assigned(self) -> None:
        """Seek the partitions assigned since the last call to their stored offsets and
        resume them. First, a new broker cluster (the broker restarted on an empty log)
        loads the rules again for its id."""
        assert self._consumer is not None
        cluster = await kafka.cluster_id(self.settings.kafka_bootstrap_servers)
        if cluster != self.config.cluster_id:
            self._config = await self._pipeline_config(cluster)
        for key in sorted(self.unplaced, key=lambda k: k[1]):
            tp = TopicPartition(*key)
            if await self.assign(tp):
                self.unplaced.discard(key)
                self._consumer.resume(tp)
        metrics.WORKER_UP.set(len(self.positions))

    async def assign(self, tp: TopicPartition) -> bool:
        """Seek ``tp`` to its stored offset; a new cluster (or none stored) reads from the
        start. False if ``tp`` was revoked meanwhile (its next owner seeks it)."""
        assert self._consumer is not None
        cluster = self.config.cluster_id
        key = (tp.topic, tp.partition)
        generation = self.assignments.get(key, 0)
        async with self.sessions() as session, session.begin():
            stored = (
                await ingest.stored_positions(
                    session, self.settings.consumer_group, tp.topic, [tp.partition]
                )
            ).get(tp.partition)
            if stored is not None and stored.cluster_id == cluster:
                offset = stored.next_offset
            else:
                # Not seek_to_beginning(): awaited inside the rebalance listener, it waits for
                # the fetcher, which waits for the rebalance to finish.
                start = offset = (await self._consumer.beginning_offsets([tp]))[tp]
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
        if self.assignments.get(key, 0) != generation:
            return False  # revoked while PostgreSQL answered
        # The position, the generation and the seek in one step (no await between): records
        # the consumer returned before it are of an older generation and dropped (the seek
        # reads them again), those returned after it are from this position.
        self.positions[key] = stored
        self.assignments[key] = generation + 1
        self._consumer.seek(tp, offset)
        return True

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Pause the new partitions until the main loop has sought them to their stored
        offsets (``place_assigned``). Nothing here waits on PostgreSQL: aiokafka sends no
        heartbeats while the listener runs, so a listener retrying through a database
        outage longer than the session timeout would have the worker expelled from the
        group and the rebalance start over."""
        assert self._consumer is not None
        self._consumer.pause(*assigned)
        self.unplaced |= {(tp.topic, tp.partition) for tp in assigned}
        log.info("partitions assigned", partitions=sorted(tp.partition for tp in assigned))

    def on_revoked(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            key = (tp.topic, tp.partition)
            self.assignments[key] = self.assignments.get(key, 0) + 1
            self.unplaced.discard(key)
            self.positions.pop(key, None)
            self.stopped.pop(key, None)
            for gauge in (metrics.CONSUMER_LAG, metrics.PARTITION_STOPPED):
                with contextlib.suppress(KeyError):  # another worker reports it now
                    gauge.remove(tp.topic, str(tp.partition))
        metrics.WORKER_UP.set(len(self.positions))


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.worker.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.worker.on_assigned(assigned)


def run(settings: Settings) -> None:
    """Entry point of ``lookout worker``: metrics port, signal handling, the loop."""
    tune_gc()
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, addr="0.0.0.0")  # noqa: S104

    async def main() -> None:
        worker = Worker(settings)
        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()
        assert main_task is not None

        def on_signal() -> None:
            worker.stopping.set()  # running: finish the batch, commit, leave the group
            if not worker.started:
                main_task.cancel()  # still starting (perhaps waiting for an outage): exit

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        with contextlib.suppress(asyncio.CancelledError):
            await worker.run()

    asyncio.run(main())
