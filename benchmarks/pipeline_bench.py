"""The worker against a broker: backlog throughput, the raw consume-and-decode ceiling,
and publish-to-alert latency at a steady rate.

* :func:`publish` writes a backlog to a topic before anything consumes it.
* :func:`raw_consume` reads that backlog with aiokafka and decodes every message with the
  worker's own :func:`lookout.ingest.validation.validate` (JSON, envelope, catalogue
  schema, identifier checks), doing nothing else: the ceiling for one Python process.
* :func:`worker_backlog` starts ONE real ``lookout worker`` process (all rules in
  ``rules/``, auditing on, its production settings) over the backlog and watches the
  offsets it commits to PostgreSQL: throughput from its first committed batch to the last,
  and its peak resident memory at half and at all of the backlog.
* :func:`steady_rate` publishes at a fixed rate while a worker and the API run, and
  measures each accepted event's latency from publish to its commit (seen in PostgreSQL)
  or, when its batch raised alerts, to the last of them being readable through
  ``GET /v1/alerts`` (read by sequence, as a subscriber does). It also says where the
  host's CPU went meanwhile: each process's CPU time per published event (the worker,
  PostgreSQL, the broker, the API, and this process: the producer and both pollers) and
  how busy the whole host was.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import RecordMetadata

from benchmarks.harness import (
    API_HEADERS,
    Process,
    Servers,
    cpu_seconds,
    lookout_env,
    machine_cpu_seconds,
)
from benchmarks.workload import INVALID_KEY, Generator, events, now_utc
from lookout import kafka
from lookout.ingest.catalogue import Catalogue
from lookout.ingest.validation import Valid, validate
from lookout.settings import PROJECT_ROOT, Settings

PARTITIONS = Settings().events_partitions


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def publish(bootstrap: str, topic: str, messages: Sequence[tuple[bytes, bytes]]) -> float:
    """Write ``messages`` (key, value) to ``topic``; returns the seconds it took."""
    await kafka.ensure_topics(bootstrap, {topic: PARTITIONS, f"{topic}.dlq": PARTITIONS})
    producer = AIOKafkaProducer(
        **kafka.producer_config(bootstrap, client_id="bench-publisher")
        | {"max_batch_size": 512 * 1024}
    )
    await producer.start()
    started = time.perf_counter()
    try:
        for chunk in range(0, len(messages), 5000):
            pending = [
                await producer.send(topic, value=value, key=key)
                for key, value in messages[chunk : chunk + 5000]
            ]
            await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def raw_consume(bootstrap: str, topic: str, total: int) -> dict[str, float]:
    """Consume ``total`` messages of ``topic`` and decode each as the worker does."""
    catalogue = Catalogue.load(PROJECT_ROOT / "schemas")
    settings = Settings()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="bench-raw",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        max_poll_records=settings.kafka_max_poll_records,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = valid = 0
        started = 0.0
        max_bytes, skew = settings.max_event_bytes, timedelta(seconds=settings.max_future_skew_s)
        while seen < total:
            batches = await consumer.getmany(timeout_ms=1000, max_records=settings.worker_batch_max)
            if not started and batches:
                started = time.perf_counter()
            now = now_utc()
            for records in batches.values():
                for record in records:
                    outcome = validate(
                        record.value,
                        catalogue=catalogue,
                        max_bytes=max_bytes,
                        now=now,
                        max_skew=skew,
                    )
                    valid += isinstance(outcome, Valid)
                seen += len(records)
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
    return {"events": seen, "valid": valid, "seconds": elapsed, "events_per_s": seen / elapsed}


async def committed(conn: asyncpg.Connection, group: str, topic: str) -> int:
    value = await conn.fetchval(
        "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets"
        " WHERE group_id = $1 AND topic = $2",
        group,
        topic,
    )
    return int(value)


async def worker_backlog(
    servers: Servers,
    url: str,
    topic: str,
    total: int,
    *,
    log_dir: Path,
    profile: Path | None = None,
) -> dict[str, Any]:
    """One ``lookout worker`` over a published backlog of ``total`` messages."""
    group = f"bench-{topic}"
    env = lookout_env(
        servers, url, events_topic=topic, dlq_topic=f"{topic}.dlq", consumer_group=group
    )
    worker = Process("worker", env, log_dir / f"worker-{topic}.log")
    spy: asyncio.subprocess.Process | None = None
    if profile is not None:
        spy_log = (log_dir / f"py-spy-{topic}.log").open("ab")
        spy = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "py-spy"),
            "record", "--pid", str(worker.pid), "--rate", "50", "--format", "raw",
            "--output", str(profile), "--nonblocking",
            stdout=spy_log, stderr=spy_log,
        )  # fmt: skip
        spy_log.close()
    conn = await asyncpg.connect(url)
    before = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM events"))
    rss_peak = rss_half = 0.0
    first_at = last_at = 0.0
    first_count = done = 0
    spawned = time.perf_counter()
    try:
        while done < total:
            worker.check()
            await asyncio.sleep(0.05)
            done = await committed(conn, group, topic)
            now = time.perf_counter()
            rss_peak = max(rss_peak, worker.rss_mb()[1])
            if done and not first_at:
                first_at, first_count = now, done
            if done * 2 <= total:
                rss_half = rss_peak
            last_at = now
            if now - spawned > 3600:
                raise TimeoutError(f"the worker committed {done} of {total} in an hour")
        rss_peak = max(rss_peak, worker.rss_mb()[1])
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM events WHERE id > $1) AS accepted,"
            " (SELECT count(*) FROM rejections) AS rejected,"
            " (SELECT count(*) FROM alerts) AS alerts,"
            " (SELECT count(*) FROM audit_records) AS audit_records",
            before,
        )
    finally:
        await conn.close()
        worker.stop()
        if spy is not None:  # it writes its profile once the worker has exited
            try:
                await asyncio.wait_for(spy.wait(), 30)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    spy.terminate()
                await spy.wait()
    measured = total - first_count
    return {
        "events": total,
        "measured_events": measured,
        "seconds": last_at - first_at,
        "events_per_s": measured / (last_at - first_at) if last_at > first_at else float("nan"),
        "startup_to_first_commit_s": first_at - spawned,
        "rss_mb_peak": rss_peak,
        "rss_mb_peak_half": rss_half,
        **{k: int(v) for k, v in dict(counts or {}).items()},
    }


def _source_and_id(value: bytes) -> tuple[str, str]:
    document = orjson.loads(value)
    return document["source"], document["id"]


class _Observer:
    """Sees commits in PostgreSQL and alerts through the API, and when.

    PostgreSQL is polled every 10 ms for the offsets the workers have committed (a batch's
    events, alerts, rejections and offsets commit together, so an offset's advance is the
    commit of the messages before it, whichever of several workers made it) and for each
    organisation's latest alert sequence. The API is asked for an organisation's alerts
    (``GET /v1/alerts?after_sequence=``, as a subscriber reads) as soon as PostgreSQL
    shows it a new one, and the time the API returns the alert is what is recorded.
    Asking the API blind every 20 ms for each organisation instead cost the host a third
    of a core at 1,000 events/s (the API's work and this process's), for requests that
    nearly all came back empty."""

    def __init__(
        self, conn: asyncpg.Connection, base: str, tokens: dict[str, str], group: str, topic: str
    ) -> None:
        self.conn = conn
        self.base = base
        self.tokens = tokens
        self.group = group
        self.topic = topic
        # Per partition, each committed offset as it was first seen, and when (ascending).
        self.advances: dict[int, list[tuple[int, float]]] = {}
        self.alert_seen: dict[str, float] = {}
        self.sequences = dict.fromkeys(tokens, 0)  # read through the API
        self.latest = dict.fromkeys(tokens, 0)  # in PostgreSQL
        self.news = asyncio.Event()
        self.stop = asyncio.Event()
        self.api_errors = 0

    async def start(self) -> None:
        self.latest = await self._latest()
        self.sequences = dict(self.latest)

    async def _latest(self) -> dict[str, int]:
        # Each organisation's alert counter, taken in the transaction that numbers the alert.
        rows = await self.conn.fetch(
            "SELECT org_id, alert_last FROM org_sequences WHERE org_id = ANY($1::text[])",
            list(self.tokens),
        )
        return dict.fromkeys(self.tokens, 0) | {org: int(last) for org, last in rows}

    async def commits(self) -> None:
        while not self.stop.is_set():
            rows = await self.conn.fetch(
                "SELECT partition, next_offset FROM consumer_offsets"
                " WHERE group_id = $1 AND topic = $2",
                self.group,
                self.topic,
            )
            now = time.perf_counter()
            for partition, offset in rows:
                seen = self.advances.setdefault(partition, [])
                if not seen or offset > seen[-1][0]:
                    seen.append((offset, now))
            self.latest = await self._latest()
            if any(self.latest[o] > self.sequences[o] for o in self.tokens):
                self.news.set()
            await asyncio.sleep(0.01)

    def committed_at(self, partition: int, offset: int) -> float | None:
        """When the message at this offset was first seen committed, or None."""
        seen = self.advances.get(partition, [])
        at = bisect.bisect_right(seen, offset, key=lambda advance: advance[0])
        return seen[at][1] if at < len(seen) else None

    async def alerts(self) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=10) as http:
            while not self.stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.news.wait(), timeout=0.1)
                self.news.clear()
                for org, token in self.tokens.items():
                    if self.latest[org] <= self.sequences[org]:
                        continue
                    response = await http.get(
                        "/v1/alerts",
                        params={"after_sequence": self.sequences[org], "limit": 200},
                        headers={"Authorization": f"Bearer {token}", **API_HEADERS},
                    )
                    now = time.perf_counter()
                    if response.status_code != 200:
                        self.api_errors += 1
                        continue
                    for item in response.json()["items"]:
                        self.alert_seen.setdefault(item["id"], now)
                        self.sequences[org] = max(self.sequences[org], int(item["sequence"]))
                    if self.latest[org] > self.sequences[org]:
                        self.news.set()  # more than a page, or not visible yet: again


async def steady_rate(
    servers: Servers,
    url: str,
    gen: Generator,
    *,
    topic: str,
    rate: int,
    seconds: float,
    base: str,
    tokens: dict[str, str],
    log_dir: Path,
    drain_s: float = 120.0,
    watch: Mapping[str, int] | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Publish ``rate`` events/s for ``seconds`` to ``workers`` running worker processes
    (one consumer group); per-event latency. ``watch``: other processes (by role) whose
    CPU time to account for, from the first event published to the drain's end, beside
    the workers' (together) and this process's."""
    group = f"bench-{topic}"
    await kafka.ensure_topics(servers.bootstrap, {topic: PARTITIONS, f"{topic}.dlq": PARTITIONS})
    pool = [
        Process(  # an environment each: each its own metrics port
            "worker",
            lookout_env(
                servers, url, events_topic=topic, dlq_topic=f"{topic}.dlq", consumer_group=group
            ),
            log_dir / f"worker-{topic}-{n}.log",
        )
        for n in range(workers)
    ]
    producer = AIOKafkaProducer(**kafka.producer_config(servers.bootstrap, client_id="bench-e2e"))
    await producer.start()
    conn = await asyncpg.connect(url)
    observer = _Observer(await asyncpg.connect(url), base, tokens, group, topic)
    tasks: list[asyncio.Task[None]] = []
    # The first copy of each valid event: when it was sent, and its delivery (partition and
    # offset) once the broker has it.
    published: dict[tuple[str, str], tuple[float, asyncio.Future[RecordMetadata]]] = {}
    try:
        # Warm up: the worker joins its group and commits a first small batch.
        warm = list(events(gen, 50))
        for key, value in warm:
            await producer.send(topic, value=value, key=key)
        await producer.flush()
        deadline = time.perf_counter() + 120
        while await committed(conn, group, topic) < len(warm):
            for worker in pool:
                worker.check()
            if time.perf_counter() > deadline:
                raise TimeoutError("the workers did not consume the warm-up events")
            await asyncio.sleep(0.1)
        await observer.start()
        tasks = [asyncio.create_task(observer.commits()), asyncio.create_task(observer.alerts())]
        # Built before the clock starts (a publisher's own work is not Lookout's), each with
        # the (source, id) its latency is kept under.
        stream = [
            (key, value, None if INVALID_KEY in key else _source_and_id(value))
            for key, value in events(gen, int(rate * seconds) + 1)
        ]
        roles = {"worker": [w.pid for w in pool]} | {r: [pid] for r, pid in (watch or {}).items()}
        cpu_before = {role: sum(map(cpu_seconds, pids)) for role, pids in roles.items()}
        cpu_before["harness"] = cpu_seconds(os.getpid(), descendants=False)
        machine_before = machine_cpu_seconds()
        started = time.perf_counter()
        sent = 0
        while True:
            elapsed = time.perf_counter() - started
            if elapsed >= seconds:
                break
            due = min(int(rate * elapsed), int(rate * seconds)) - sent
            for key, value, identity in stream[sent : sent + due]:
                at = time.perf_counter()
                delivery = await producer.send(topic, value=value, key=key)
                if identity is not None:  # not one of the workload's invalid messages
                    published.setdefault(identity, (at, delivery))
            sent += due
            await asyncio.sleep(0.005)
        publish_s = time.perf_counter() - started
        await producer.flush()
        # Wait for every accepted event of the run (rejected and duplicate messages leave
        # no event row; they are recognised below by having none after the drain).
        deadline = time.perf_counter() + drain_s
        done = await committed(conn, group, topic)
        while done < sent + len(warm) and time.perf_counter() < deadline:
            for worker in pool:
                worker.check()
            await asyncio.sleep(0.1)
            done = await committed(conn, group, topic)
        drained = done >= sent + len(warm)
        rss_peak = max(worker.rss_mb()[1] for worker in pool)  # the kernel's high-water mark
        machine_after = machine_cpu_seconds()
        cpu_ms = {
            role: (sum(map(cpu_seconds, pids)) - cpu_before[role]) * 1000 / max(sent, 1)
            for role, pids in roles.items()
        }
        cpu_ms["harness"] = (
            (cpu_seconds(os.getpid(), descendants=False) - cpu_before["harness"])
            * 1000
            / max(sent, 1)
        )
        busy, idle = (a - b for a, b in zip(machine_after, machine_before, strict=True))
        await asyncio.sleep(0.5)  # the last alerts reach the API poller
        observer.stop.set()
        stopped = time.perf_counter()
        await asyncio.gather(*tasks)
        # Each alert seen, with the events of the batch that raised it: the rows one
        # transaction wrote share its now() (events.received_at, alerts.created_at). That
        # batch is its trigger event's, or a later one whose event made an earlier trigger
        # event's rule hold (DESIGN.md "Order does not matter"): its latency runs from that
        # later event, not from the trigger's publication.
        rows = await conn.fetch(
            "SELECT a.id::text AS id, e.source, e.event_id, e.id = a.trigger_event_id AS trigger"
            " FROM alerts a JOIN events e ON e.received_at = a.created_at"
            " WHERE a.id::text = ANY($1::text[])",
            list(observer.alert_seen),
        )
    finally:
        for task in tasks:
            task.cancel()
        await producer.stop()
        await conn.close()
        await observer.conn.close()
        for worker in pool:
            worker.stop()
    alert_at: dict[tuple[str, str], float] = {}
    for row in rows:
        event = (row["source"], row["event_id"])
        alert_at[event] = max(alert_at.get(event, 0.0), observer.alert_seen[row["id"]])
    raised_with_trigger = {row["id"] for row in rows if row["trigger"]}
    latencies = []
    with_alert = pending = 0
    for event_key, (at, delivery) in published.items():
        record = delivery.result()
        seen = observer.committed_at(record.partition, record.offset)
        if seen is None:
            # Not committed when the drain ended: its latency is at least this long (so the
            # percentiles are lower bounds when "drained" is false).
            pending += 1
            latencies.append((stopped - at) * 1000)
            continue
        if event_key in alert_at:
            with_alert += 1
            seen = max(seen, alert_at[event_key])
        latencies.append((seen - at) * 1000)
    return {
        "rate_target": rate,
        "published": sent,
        "publish_s": publish_s,
        "rate_achieved": sent / publish_s,
        "drained": drained,
        "latency_events": len(latencies),
        "not_committed": pending,
        "events_with_alert": with_alert,
        "alerts_seen": len(observer.alert_seen),
        "alerts_raised_later": len(observer.alert_seen.keys() - raised_with_trigger),
        "latency_p50_ms": percentile(latencies, 0.5),
        "latency_p99_ms": percentile(latencies, 0.99),
        "latency_max_ms": max(latencies, default=float("nan")),
        "api_errors": observer.api_errors,
        "worker_rss_mb_peak": rss_peak,
        "cpu_ms_per_event": cpu_ms,
        "host_busy_pct": 100 * busy / max(busy + idle, 1e-9),
    }
