"""Fault harness: nothing lost, nothing doubled, under crashes, outages and rebalances.

    .venv/bin/python -m benchmarks.faults --events 50000 --kills 20 --seed 7   # `make faults`
    .venv/bin/python -m benchmarks.faults --events 1500 --kills 3 --seed 11    # the CI form

One seeded run, start to finish:

1. starts its own embedded PostgreSQL and Tansu broker (``lookout.embedded``), migrates,
   registers the agencies and children's services;
2. generates a stream from the seed (:func:`generate`): households of adults, children and
   infants moving in (long ago; some adults recently), protection plans, and ED
   attendances over the last 45 days; plus exact duplicates (the same bytes again, and the
   same content re-serialised), and invalid messages of every reason code the worker can
   decide alone (not JSON, not UTF-8, too large, envelope, unknown type, schema, check
   digit, unregistered source, future time). The whole stream is shuffled (out of order;
   each event is keyed by its own reference, so one household's events land on every
   partition) and published while the workers consume it;
3. runs two or three ``lookout worker`` processes in one consumer group and, at points
   spread over the consumption (seeded), SIGKILLs workers — half at a random moment
   (usually mid-batch: batches are most of a worker's time), half right after a database
   commit (the harness watches the worker's log and kills on its ``batch committed`` line,
   i.e. between the COMMIT and the DLQ copy that follows it; no hook in the worker) — starts
   and gracefully stops workers (SIGTERM, which must exit 0) to force rebalances, pauses the
   broker (SIGSTOP/SIGCONT) and restarts PostgreSQL;
4. once every partition is caught up, stops the workers (SIGTERM), lets one fresh worker
   re-send DLQ copies that a kill interrupted, seals the audit trail and checks, against
   the oracle (the pure replay engine over the distinct valid events of the same seed):
   every expected alert exists exactly once per recipient with the same children, no other
   alert exists, every valid event is stored exactly once, every invalid message has
   exactly one rejection row with its reason, the DLQ topic holds every rejection id, no
   worker exited on its own, and the audit trail verifies.

It prints the figures and exits 1 on any difference. ``--results`` merges the figures into
``benchmarks/results.json`` (the long form, ``make faults``, does).

Events whose time is near the alerting horizon (30 days) would raise an alert or not
depending on when they are processed, so the generator keeps trigger events out of the
band 29-31 days old: the oracle's answer must not depend on the run's duration.
``--move-outs`` adds recent move-outs, late facts that can falsify an alert already raised:
then an alert the oracle does not have must be marked for review, and an alert may name
more children than the oracle's (a child counted before the move-out was known stays
named) only if it is marked for review. By default two things are left out because their
outcome depends on arrival order by design:
duplicates with *different* content (the first copy wins, the other is rejected as
``duplicate_conflict``) and move-outs (a move-out processed after an alert it would have
prevented leaves the alert in place, to be marked for review: DESIGN.md "Order does not
matter"). Every fact in the default stream only adds to the picture, so the oracle's
alerts are exact.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lookout import kafka
from lookout.alerts.models import Alert
from lookout.audit import signing
from lookout.audit.sealer import seal_once
from lookout.audit.service import Actor
from lookout.audit.verify import verify
from lookout.db import create_engine, session_factory
from lookout.embedded.broker import EmbeddedBroker, parent_death_signal_preexec
from lookout.embedded.postgres import EmbeddedPostgres
from lookout.household.models import Household
from lookout.identity.identifiers import nhs_number_check_digit
from lookout.identity.models import PersonIdentifier
from lookout.ingest.models import ConsumerOffset, Event, Rejection
from lookout.migrations import upgrade
from lookout.orgs import service as orgs
from lookout.orgs.models import OrgKind
from lookout.rules.model import load_rules
from lookout.rules.replay import replay
from lookout.settings import PROJECT_ROOT, Settings

HOSPITAL = "urn:lookout:agency:faults-hospital"
COUNCIL = "urn:lookout:agency:faults-council"
UNREGISTERED = "urn:lookout:agency:faults-unregistered"
LAS = ("E09000012", "E09000002")
LONDON = ZoneInfo("Europe/London")
PARTITIONS = 6
MAX_EVENT_BYTES = 16 * 1024
INVALID_REASONS = (
    "not_json",
    "not_utf8",
    "too_large",
    "invalid_envelope",
    "unknown_type",
    "schema_violation",
    "invalid_identifier",
    "unknown_source",
    "future_time",
)
RESULTS = PROJECT_ROOT / "benchmarks" / "results.json"


# --- the stream --------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One message to publish: its bytes, its key, and what must become of it."""

    raw: bytes
    key: bytes
    expect: str  # "valid", or the rejection reason code
    event: dict[str, Any] | None = None


@dataclass
class Stream:
    items: list[Item]
    valid: list[dict[str, Any]]  # the distinct valid events: the oracle's input
    households: int
    duplicates: int


class _Gen:
    def __init__(self, seed: int, now: datetime) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - test data, not secrets
        self.now = now
        self.serial = 0
        self.nhs_serial = seed % 50 * 100_000

    def nhs_number(self) -> str:
        while True:
            self.nhs_serial += 1
            body = f"94{self.nhs_serial:07d}"
            digit = nhs_number_check_digit(body)
            if digit is not None:
                return body + str(digit)

    def person(self, age: int | None) -> dict[str, Any]:
        p: dict[str, Any] = {"nhs_number": self.nhs_number()}
        if age is not None:
            today = self.now.astimezone(LONDON).date()
            born = today.replace(year=today.year - age) - timedelta(days=self.rng.randint(1, 300))
            p["birth_date"] = born.isoformat()
        return p

    def event(
        self, type_: str, data: dict[str, Any], at: datetime, source: str = COUNCIL
    ) -> dict[str, Any]:
        self.serial += 1
        return {
            "specversion": "1.0",
            "id": f"f-{self.serial}",
            "source": source,
            "type": f"uk.lookout.{type_}.v1",
            "time": at.isoformat(),
            "subject": f"fref-{self.serial}",
            "datacontenttype": "application/json",
            "data": data,
        }

    def trigger_time(self, *, max_days: float = 45) -> datetime:
        """A time in the last ``max_days``, never in the band 29-31 days old (see module doc)."""
        while True:
            days = self.rng.uniform(1 / 24, max_days)
            if not 29 <= days <= 31:
                return self.now - timedelta(days=days)

    def residence(
        self, who: dict[str, Any], address: dict[str, str], change: str, at: datetime, on: date
    ) -> dict[str, Any]:
        data = {"person": who, "address": address, "change": change, "date": on.isoformat()}
        return self.event("person.residence", data, at)

    def ed(self, who: dict[str, Any], reasons: list[str], at: datetime) -> dict[str, Any]:
        data = {"patient": who, "site_ods_code": "RQXM1", "presenting_reasons": reasons}
        return self.event("health.ed_attendance", data, at, HOSPITAL)

    def plan(self, child: dict[str, Any], la: str, at: datetime) -> dict[str, Any]:
        data = {
            "child": child,
            "la_code": la,
            "change": "started",
            "date": at.astimezone(LONDON).date().isoformat(),
            "category": "neglect",
        }
        return self.event("social_care.child_protection_plan", data, at)


def generate(events: int, seed: int, now: datetime, *, move_outs: bool = False) -> Stream:
    """The seeded stream: about 85% distinct valid events, 8% duplicates, 7% invalid."""
    g = _Gen(seed, now)
    rng = g.rng
    valid_target = int(events * 0.85)
    n_households = max(6, events // 60)
    valid: list[dict[str, Any]] = []
    members: list[list[tuple[dict[str, Any], int | None]]] = []
    long_ago = now.astimezone(LONDON).date().replace(year=now.year - 1)
    for h in range(n_households):
        address = {"uprn": str(110_000_000_000 + h), "la_code": rng.choice(LAS)}
        people: list[tuple[dict[str, Any], int | None]] = []
        for _ in range(rng.randint(1, 2)):
            age = None if rng.random() < 0.05 else rng.randint(19, 70)
            people.append((g.person(age), age))
        for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
            age = rng.randint(0, 1) if rng.random() < 0.3 else rng.randint(2, 17)
            people.append((g.person(age), age))
        for who, age in people:
            valid.append(g.residence(who, address, "moved_in", now - timedelta(days=300), long_ago))
            if age is not None and age < 18 and rng.random() < 0.15:
                valid.append(g.plan(who, address["la_code"], now - timedelta(days=60)))
            if move_outs and rng.random() < 0.08:  # a late fact that can falsify an alert
                at = g.trigger_time(max_days=25)
                valid.append(
                    g.residence(who, address, "moved_out", at, at.astimezone(LONDON).date())
                )
        if rng.random() < 0.15:  # a new adult joins recently (rule 5 where a child has a plan)
            newcomer = g.person(rng.randint(19, 50))
            at = g.trigger_time(max_days=25)
            valid.append(
                g.residence(newcomer, address, "moved_in", at, at.astimezone(LONDON).date())
            )
            people.append((newcomer, 30))
        members.append(people)
    while len(valid) < valid_target:
        who, age = rng.choice(rng.choice(members))
        if age is not None and age < 2:
            reasons = [rng.choice(("injury", "injury", "other"))]
        elif age is not None and age < 18:
            reasons = [rng.choice(("injury", "other", "mental_health"))]
        else:
            reasons = [rng.choice(("alcohol", "substance", "other", "other", "mental_health"))]
        valid.append(g.ed(who, reasons, g.trigger_time()))

    items = [Item(orjson.dumps(e), e["subject"].encode(), "valid", e) for e in valid]
    n_duplicates = int(events * 0.08)
    for n in range(n_duplicates):
        e = rng.choice(valid)
        raw = (
            orjson.dumps(e)
            if n % 2
            else orjson.dumps(dict(reversed(list(e.items()))))  # same content, other bytes
        )
        items.append(Item(raw, e["subject"].encode(), "valid", e))
    for n in range(max(len(INVALID_REASONS), events - len(items))):
        reason = INVALID_REASONS[n % len(INVALID_REASONS)]
        items.append(Item(_invalid(g, reason, n), f"junk-{n}".encode(), reason))
    rng.shuffle(items)
    return Stream(items, valid, n_households, n_duplicates)


def _invalid(g: _Gen, reason: str, n: int) -> bytes:
    """A message the worker must reject with ``reason`` (unique bytes, fresh persons)."""
    who = g.person(30)
    if reason == "not_json":
        return b'{"specversion": "1.0", "id": "bad-%d", "trunc' % n
    if reason == "not_utf8":
        return b'{"id": "bad-%d", "x": "\xff\xfe"}' % n
    if reason == "too_large":
        return orjson.dumps({"id": f"bad-{n}", "pad": "x" * (MAX_EVENT_BYTES + 100)})
    if reason == "invalid_envelope":
        return orjson.dumps({"specversion": "1.0", "id": f"bad-{n}"})
    event = g.ed(who, ["alcohol"], g.trigger_time())
    if reason == "unknown_type":
        event["type"] = "uk.lookout.nothing.such.v1"
    elif reason == "schema_violation":
        event["data"]["presenting_reasons"] = ["teleportation"]
    elif reason == "invalid_identifier":
        good = who["nhs_number"]
        who["nhs_number"] = good[:9] + str((int(good[9]) + 1) % 10)
    elif reason == "unknown_source":
        event["source"] = UNREGISTERED
    elif reason == "future_time":
        event["time"] = (g.now + timedelta(days=2)).isoformat()
    return orjson.dumps(event)


# --- the processes -----------------------------------------------------------------------


@dataclass
class WorkerProc:
    n: int
    proc: asyncio.subprocess.Process
    log_path: Path
    committed: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    kill_on_commit: bool = False
    expected_exit: bool = False
    reader: asyncio.Task[None] | None = None


@dataclass
class Figures:
    events: int = 0
    households: int = 0
    duplicates_published: int = 0
    invalid_published: int = 0
    kills: int = 0
    kills_after_commit: int = 0
    kills_random: int = 0
    graceful_stops: int = 0
    workers_started: int = 0
    rebalances: int = 0
    assignments_logged: int = 0
    broker_pauses: int = 0
    postgres_restarts: int = 0
    worker_crashes: int = 0
    alerts_expected: int = 0
    alerts_found: int = 0
    alerts_duplicated: int = 0
    alerts_missing: int = 0
    alerts_unexpected: int = 0
    alerts_wrong_children: int = 0
    alerts_reviewed: int = 0  # --move-outs: not in the oracle, and marked for review
    valid_expected: int = 0
    valid_stored: int = 0
    rejections_expected: int = 0
    rejections_found: int = 0
    rejection_problems: int = 0
    dlq_missing: int = 0
    audit_ok: bool = False
    audit_records: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


class Harness:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.rng = random.Random(args.seed * 7919)  # noqa: S311 - fault schedule
        self.fig = Figures()
        self.workers: list[WorkerProc] = []
        self.pg: EmbeddedPostgres | None = None
        self.broker: EmbeddedBroker | None = None
        self.url = ""
        self.settings: Settings | None = None
        self.sessions: async_sessionmaker[AsyncSession] | None = None
        self.ends: dict[int, int] = {}
        self.published = 0
        self.total = 0
        self._serial = 0

    # -- environment ------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        s = self.settings
        assert s is not None
        return {
            **os.environ,
            "LOOKOUT_DATABASE_URL": s.database_url,
            "LOOKOUT_KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
            "LOOKOUT_EVENTS_TOPIC": s.events_topic,
            "LOOKOUT_DLQ_TOPIC": s.dlq_topic,
            "LOOKOUT_EVENTS_PARTITIONS": str(PARTITIONS),
            "LOOKOUT_CONSUMER_GROUP": s.consumer_group,
            "LOOKOUT_KAFKA_SESSION_TIMEOUT_MS": str(s.kafka_session_timeout_ms),
            "LOOKOUT_KAFKA_HEARTBEAT_INTERVAL_MS": str(s.kafka_heartbeat_interval_ms),
            "LOOKOUT_WORKER_BATCH_MAX": str(s.worker_batch_max),
            "LOOKOUT_KAFKA_MAX_POLL_RECORDS": str(s.kafka_max_poll_records),
            "LOOKOUT_MAX_EVENT_BYTES": str(s.max_event_bytes),
            "LOOKOUT_RETRY_BACKOFF_MAX_S": str(s.retry_backoff_max_s),
            "LOOKOUT_WORKER_METRICS_PORT": "0",
            "LOOKOUT_STATE_DIR": str(s.state_dir),
            "LOOKOUT_LOG_JSON": "true",
        }

    async def start_infra(self) -> None:
        self.pg = EmbeddedPostgres.start(self.workdir / "pg", durable=False)
        self.broker = EmbeddedBroker.start(self.workdir / "broker.log", die_with_parent=True)
        admin = await asyncpg.connect(self.pg.url)
        try:
            await admin.execute('CREATE DATABASE "lookout"')
        finally:
            await admin.close()
        self.url = self.pg.url_for("lookout")
        await asyncio.to_thread(upgrade, self.url)
        run = secrets.token_hex(3)
        self.settings = Settings(
            database_url=self.url,
            kafka_bootstrap_servers=self.broker.bootstrap_servers,
            events_topic=f"faults-{run}.events",
            dlq_topic=f"faults-{run}.events.dlq",
            events_partitions=PARTITIONS,
            consumer_group=f"faults-{run}",
            kafka_session_timeout_ms=4_000,
            kafka_heartbeat_interval_ms=1_000,
            worker_batch_max=self.args.batch,
            kafka_max_poll_records=self.args.batch,
            max_event_bytes=MAX_EVENT_BYTES,
            retry_backoff_max_s=2.0,
            state_dir=self.workdir / "state",
            worker_metrics_port=0,
        )
        await kafka.ensure_topics(
            self.broker.bootstrap_servers,
            {self.settings.events_topic: PARTITIONS, self.settings.dlq_topic: PARTITIONS},
        )
        engine = create_engine(self.url, pool_size=2)
        self.sessions = session_factory(engine)
        actor = Actor(client_id="faults")
        async with self.sessions() as session, session.begin():
            for org_id, source in (("faults-hospital", HOSPITAL), ("faults-council", COUNCIL)):
                await orgs.create_org(
                    session, actor, org_id=org_id, name=org_id, kind=OrgKind.agency, source=source
                )
            for la in LAS:
                await orgs.create_org(
                    session,
                    actor,
                    org_id=f"cs-{la.lower()}",
                    name=f"Children's services {la}",
                    kind=OrgKind.children_services,
                    la_code=la,
                )

    async def start_worker(self) -> WorkerProc:
        self._serial += 1
        log_path = self.workdir / f"worker-{self._serial}.log"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lookout",
            "worker",
            env=self.env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=parent_death_signal_preexec(signal.SIGKILL),
        )
        w = WorkerProc(self._serial, proc, log_path)
        w.reader = asyncio.create_task(self._read_log(w))
        self.workers.append(w)
        self.fig.workers_started += 1
        if len(self.live()) > 1 or self.fig.workers_started > 1:
            self.fig.rebalances += 1
        return w

    async def _read_log(self, w: WorkerProc) -> None:
        assert w.proc.stderr is not None
        with w.log_path.open("ab", buffering=0) as out:
            while True:
                try:
                    line = await w.proc.stderr.readuntil(b"\n")
                except asyncio.IncompleteReadError as end:
                    out.write(end.partial)
                    break
                except asyncio.LimitOverrunError as long:  # a huge line: keep reading
                    out.write(await w.proc.stderr.read(long.consumed))
                    continue
                if b"batch committed" in line:
                    if w.kill_on_commit and w.proc.returncode is None:
                        w.expected_exit = True
                        with contextlib.suppress(ProcessLookupError):
                            w.proc.send_signal(signal.SIGKILL)
                        w.kill_on_commit = False
                    w.committed.set()
                if b"worker started" in line:
                    w.started.set()
                if b"partitions assigned" in line:
                    self.fig.assignments_logged += 1
                out.write(line)
        code = await w.proc.wait()
        if not w.expected_exit:
            self.fig.worker_crashes += 1
            self.fig.problems.append(f"worker {w.n} exited by itself with code {code}")

    def live(self) -> list[WorkerProc]:
        return [w for w in self.workers if w.proc.returncode is None and not w.expected_exit]

    async def kill(self, after_commit: bool) -> None:
        victims = self.live()
        if not victims:
            return
        w = self.rng.choice(victims)
        if after_commit:
            w.committed.clear()
            w.kill_on_commit = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(w.committed.wait(), timeout=8)
            if w.proc.returncode is None and w.kill_on_commit:  # no commit seen: kill anyway
                w.kill_on_commit = False
                w.expected_exit = True
                w.proc.send_signal(signal.SIGKILL)
                self.fig.kills_random += 1
            else:
                self.fig.kills_after_commit += 1
        else:
            await asyncio.sleep(self.rng.uniform(0, 0.5))
            if w.proc.returncode is not None:
                return
            w.expected_exit = True
            w.proc.send_signal(signal.SIGKILL)
            self.fig.kills_random += 1
        self.fig.kills += 1
        self.fig.rebalances += 1
        await w.proc.wait()
        await asyncio.sleep(self.rng.uniform(0, 2.0))
        if len(self.live()) < 2:
            await self.start_worker()

    async def stop_gracefully(self, w: WorkerProc, within_s: float = 60) -> None:
        # Before its signal handlers are installed a worker just dies of SIGTERM (harmless:
        # it holds nothing yet); the graceful path is the one under test.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(w.started.wait(), within_s)
        if not w.started.is_set():
            self.fig.problems.append(f"worker {w.n} had not started {within_s:.0f}s later")
        w.expected_exit = True
        w.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(w.proc.wait(), within_s)
        except TimeoutError:
            self.fig.problems.append(f"worker {w.n} did not stop within {within_s:.0f}s of SIGTERM")
            w.proc.kill()
            await w.proc.wait()
            return
        if code != 0:
            self.fig.problems.append(f"worker {w.n} exited {code} after SIGTERM (expected 0)")
        self.fig.graceful_stops += 1

    async def membership_change(self) -> None:
        live = self.live()
        if len(live) >= 3:
            await self.stop_gracefully(self.rng.choice(live))
            self.fig.rebalances += 1
        else:
            await self.start_worker()

    async def pause_broker(self) -> None:
        assert self.broker is not None
        pause = self.rng.uniform(1.0, 4.0)
        os.kill(self.broker.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(pause)
        finally:
            os.kill(self.broker.pid, signal.SIGCONT)
        self.fig.broker_pauses += 1

    async def restart_postgres(self) -> None:
        assert self.pg is not None
        port, data_dir = self.pg.port, self.pg.data_dir
        await asyncio.to_thread(self.pg.stop)
        await asyncio.sleep(self.rng.uniform(1.0, 3.0))
        self.pg = await asyncio.to_thread(
            EmbeddedPostgres.start, data_dir, port, durable=False, log_path=self.pg.log_path
        )
        self.fig.postgres_restarts += 1

    # -- progress ---------------------------------------------------------------------

    async def consumed(self) -> int | None:
        """Messages committed so far (sum of the stored offsets); None while the DB is down."""
        assert self.sessions is not None
        assert self.settings is not None
        try:
            async with self.sessions() as session:
                total = await session.scalar(
                    select(func.coalesce(func.sum(ConsumerOffset.next_offset), 0)).where(
                        ConsumerOffset.group_id == self.settings.consumer_group
                    )
                )
        except Exception:  # PostgreSQL restarting: ask again later
            return None
        return int(total or 0)

    async def publish(self, stream: Stream) -> None:
        assert self.settings is not None
        producer = AIOKafkaProducer(
            **kafka.producer_config(self.settings.kafka_bootstrap_servers),
            max_request_size=4 * MAX_EVENT_BYTES,
            request_timeout_ms=120_000,
        )
        await producer.start()
        try:
            chunk = 200
            for start in range(0, len(stream.items), chunk):
                sent = [
                    await producer.send(self.settings.events_topic, value=i.raw, key=i.key)
                    for i in stream.items[start : start + chunk]
                ]
                for meta in await asyncio.gather(*sent):
                    self.ends[meta.partition] = max(
                        self.ends.get(meta.partition, 0), meta.offset + 1
                    )
                self.published += len(sent)
                await asyncio.sleep(0.05)  # a stream, not one burst
        finally:
            await producer.stop()

    async def wait_caught_up(self, within_s: float) -> bool:
        target = sum(self.ends.values())
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if await self.consumed() == target:
                return True
            await asyncio.sleep(0.5)
        return False

    # -- the run ----------------------------------------------------------------------

    async def run(self) -> Figures:
        args = self.args
        started = time.monotonic()
        now = datetime.now(UTC)
        stream = generate(args.events, args.seed, now, move_outs=args.move_outs)
        self.total = len(stream.items)
        self.fig.events = self.total
        self.fig.households = stream.households
        self.fig.duplicates_published = stream.duplicates
        self.fig.invalid_published = sum(i.expect != "valid" for i in stream.items)
        print(
            f"stream: {self.total} messages, {stream.households} households, "
            f"{len(stream.valid)} distinct valid events, {stream.duplicates} duplicates, "
            f"{self.fig.invalid_published} invalid",
            flush=True,
        )
        await self.start_infra()
        print(f"infrastructure up ({time.monotonic() - started:.0f}s)", flush=True)
        for _ in range(2):
            await self.start_worker()
        self.fig.rebalances = 1

        faults = [
            (self.rng.uniform(0.03, 0.92), "kill_commit" if n % 2 else "kill_random")
            for n in range(args.kills)
        ]
        faults += [(self.rng.uniform(0.05, 0.9), "member") for _ in range(args.rebalances)]
        faults += [(self.rng.uniform(0.05, 0.9), "pause") for _ in range(args.pauses)]
        faults += [(self.rng.uniform(0.1, 0.8), "postgres") for _ in range(args.pg_restarts)]
        faults.sort()

        publisher = asyncio.create_task(self.publish(stream))
        last_progress, last_change = -1, time.monotonic()
        for threshold, kind in faults:
            while True:
                done = await self.consumed()
                if done is not None and done != last_progress:
                    last_progress, last_change = done, time.monotonic()
                if time.monotonic() - last_change > args.stall_s:
                    self.fig.problems.append(f"no progress for {args.stall_s:.0f}s at {done}")
                    break
                if done is not None and done >= threshold * self.total:
                    break
                if publisher.done() and done is not None and done >= sum(self.ends.values()):
                    break  # everything consumed before this fault's point
                await asyncio.sleep(0.3)
            if self.fig.problems:
                break
            print(
                f"  {time.monotonic() - started:6.0f}s  {last_progress:>7} done  {kind}", flush=True
            )
            if kind == "kill_commit":
                await self.kill(after_commit=True)
            elif kind == "kill_random":
                await self.kill(after_commit=False)
            elif kind == "member":
                await self.membership_change()
            elif kind == "pause":
                await self.pause_broker()
            elif kind == "postgres":
                await self.restart_postgres()
        await publisher
        while len(self.live()) < 2:
            await self.start_worker()
        if not self.fig.problems and not await self.wait_caught_up(args.stall_s * 2):
            self.fig.problems.append("the workers did not catch up with the log")
        for w in self.live():
            await self.stop_gracefully(w)
        # A fresh worker sweeps the rejections whose DLQ copy a kill interrupted.
        sweeper = await self.start_worker()
        await self.wait_dlq_published(60)
        await self.stop_gracefully(sweeper)
        for w in self.workers:
            if w.reader is not None:
                await w.reader
        await self.check(stream, now)
        self.fig.seconds = round(time.monotonic() - started, 1)
        return self.fig

    async def wait_dlq_published(self, within_s: float) -> None:
        assert self.sessions is not None
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            async with self.sessions() as session:
                pending = await session.scalar(
                    select(func.count())
                    .select_from(Rejection)
                    .where(Rejection.dlq_published_at.is_(None))
                )
            if pending == 0:
                return
            await asyncio.sleep(0.5)

    # -- the checks -------------------------------------------------------------------

    async def read_topic(self, topic: str) -> list[Any]:
        assert self.settings is not None
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, 0)
            records: list[Any] = []
            quiet = 0
            while quiet < 3:
                batch = await consumer.getmany(timeout_ms=500, max_records=5_000)
                got = [r for rs in batch.values() for r in rs]
                records += got
                quiet = 0 if got else quiet + 1
            return records
        finally:
            await consumer.stop()

    async def check(self, stream: Stream, now: datetime) -> None:
        assert self.sessions is not None
        assert self.settings is not None
        fig = self.fig
        expect_of = {i.raw: i.expect for i in stream.items}
        log = await self.read_topic(self.settings.events_topic)
        invalid_at = {
            (r.partition, r.offset): expect_of[r.value]
            for r in log
            if expect_of.get(r.value, "valid") != "valid"
        }
        unknown = [r for r in log if r.value not in expect_of]
        if unknown:
            fig.problems.append(f"{len(unknown)} message(s) on the log the harness did not send")

        async with self.sessions() as session:
            stored = (await session.execute(select(Event.source, Event.event_id))).all()
            rejections = (
                await session.execute(
                    select(
                        Rejection.id,
                        Rejection.reason,
                        Rejection.detail,
                        Rejection.kafka_partition,
                        Rejection.kafka_offset,
                    )
                )
            ).all()
            rows = (
                await session.execute(
                    select(
                        Alert.rule_id,
                        Household.uprn,
                        Alert.recipient_key,
                        Alert.children,
                        Alert.review_reason,
                    ).join(Household, Household.id == Alert.household_id)
                )
            ).all()
            identifiers = await session.execute(
                select(PersonIdentifier.person_id, PersonIdentifier.value).where(
                    PersonIdentifier.scheme == "nhs_number"
                )
            )
            nhs: dict[int, str] = {int(p): str(v) for p, v in identifiers.all()}

        # Events: every distinct valid event exactly once.
        expected_keys = {(e["source"], e["id"]) for e in stream.valid}
        stored_keys = Counter((s, i) for s, i in stored)
        fig.valid_expected, fig.valid_stored = len(expected_keys), len(stored_keys)
        doubled = [k for k, n in stored_keys.items() if n > 1]
        if doubled:
            fig.problems.append(f"{len(doubled)} event(s) stored more than once")
        if set(stored_keys) != expected_keys:
            fig.problems.append(
                f"events: {len(expected_keys - set(stored_keys))} valid not stored, "
                f"{len(set(stored_keys) - expected_keys)} stored that are not valid"
            )

        # Rejections: exactly one per invalid message, with its reason; none for valid ones.
        by_position: dict[tuple[int, int], list[str]] = defaultdict(list)
        for r in rejections:
            by_position[(r.kafka_partition, r.kafka_offset)].append(r.reason)
        fig.rejections_expected, fig.rejections_found = len(invalid_at), len(rejections)
        for position, reason in invalid_at.items():
            got = by_position.get(position, [])
            if got != [reason]:
                fig.rejection_problems += 1
                if fig.rejection_problems <= 5:
                    fig.problems.append(f"message {position}: expected [{reason}], found {got}")
        extra = set(by_position) - set(invalid_at)
        if extra:
            fig.rejection_problems += len(extra)
            why = Counter(
                f"{r.reason}: {r.detail}"
                for r in rejections
                if (r.kafka_partition, r.kafka_offset) in extra
            )
            fig.problems.append(
                f"{len(extra)} valid message(s) were rejected: "
                + "; ".join(f"{n} x {reason}" for reason, n in why.most_common())
            )

        # DLQ: every rejection id at least once (at-least-once copy).
        dlq = await self.read_topic(self.settings.dlq_topic)
        dlq_ids = {dict(r.headers).get("rejection-id", b"").decode() for r in dlq}
        fig.dlq_missing = sum(str(r.id) not in dlq_ids for r in rejections)
        if fig.dlq_missing:
            fig.problems.append(f"{fig.dlq_missing} rejection(s) missing from the DLQ topic")

        # Alerts against the oracle.
        rules = load_rules(self.settings.rules_dir)
        oracle = replay(stream.valid, rules, now=datetime.now(UTC))
        expected = {(a.rule_id, a.household[0], a.recipient_key): a.children for a in oracle}
        found: dict[tuple[str, str, str], list[frozenset[str]]] = defaultdict(list)
        reviewed: set[tuple[str, str, str]] = set()
        for rule, uprn, key, children, review_reason in rows:
            found[(rule, uprn, key)].append(
                frozenset(f"nhs_number:{nhs.get(c, c)}" for c in children)
            )
            if review_reason is not None:
                reviewed.add((rule, uprn, key))
        if self.args.move_outs:
            # Order-dependent by design (DESIGN.md): an alert raised before a move-out that
            # falsifies it stays, marked for review; a child found in the household stays
            # named, and the alert is marked for review. Exact: the oracle's alerts, each
            # with at least the oracle's children, and more only under review.
            surplus = set(found) - set(expected)
            fig.alerts_reviewed = len(surplus & reviewed)
            fig.alerts_unexpected = len(surplus - reviewed)
            wrong = [
                k
                for k, v in found.items()
                if k in expected
                and not (expected[k] <= v[0] and (v[0] == expected[k] or k in reviewed))
            ]
        else:
            fig.alerts_unexpected = len(set(found) - set(expected))
            wrong = [k for k, v in found.items() if k in expected and v[0] != expected[k]]
        fig.alerts_expected = len(expected)
        fig.alerts_found = len(rows)
        fig.alerts_duplicated = sum(len(v) - 1 for v in found.values() if len(v) > 1)
        fig.alerts_missing = len(set(expected) - set(found))
        fig.alerts_wrong_children = len(wrong)
        for what in ("duplicated", "missing", "unexpected", "wrong_children"):
            n = getattr(fig, f"alerts_{what}")
            if n:
                sample = sorted(
                    (set(expected) - set(found))
                    if what == "missing"
                    else (set(found) - set(expected))
                    if what == "unexpected"
                    else [k for k, v in found.items() if len(v) > 1]
                    if what == "duplicated"
                    else wrong
                )[:3]
                fig.problems.append(f"alerts {what}: {n} (e.g. {sample})")

        # The audit trail: seal everything, then verify every link.
        engine = create_engine(self.url, pool_size=2)
        try:
            await seal_once(engine, self.settings, force_checkpoint=True)
            async with session_factory(engine)() as session, session.begin():
                report = await verify(
                    session,
                    signing.verify_key(self.settings),
                    signing.checkpoint_dir(self.settings),
                )
        finally:
            await engine.dispose()
        fig.audit_ok, fig.audit_records = report.ok, report.records_checked
        if not report.ok:
            fig.problems.append(f"audit trail fails verification: {report.problem}")

    def stop(self) -> None:
        for w in self.workers:
            if w.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()
        if self.broker is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.broker.pid, signal.SIGCONT)
            self.broker.stop()
        if self.pg is not None:
            self.pg.stop()


def report(fig: Figures) -> str:
    lines = [
        f"events published        {fig.events} ({fig.households} households, "
        f"{fig.duplicates_published} duplicates, {fig.invalid_published} invalid)",
        f"kills (SIGKILL)         {fig.kills} ({fig.kills_after_commit} right after a commit, "
        f"{fig.kills_random} at a random point)",
        f"rebalances              {fig.rebalances} membership changes "
        f"({fig.workers_started} workers started, {fig.graceful_stops} SIGTERM stops; "
        f"{fig.assignments_logged} assignments logged)",
        f"broker pauses           {fig.broker_pauses} (SIGSTOP/SIGCONT)",
        f"PostgreSQL restarts     {fig.postgres_restarts}",
        f"valid events            expected {fig.valid_expected}, stored {fig.valid_stored}",
        f"rejections              expected {fig.rejections_expected}, "
        f"found {fig.rejections_found}, wrong {fig.rejection_problems}, "
        f"missing from DLQ {fig.dlq_missing}",
        f"alerts                  expected {fig.alerts_expected}, found {fig.alerts_found}, "
        f"duplicated {fig.alerts_duplicated}, missing {fig.alerts_missing}, "
        f"unexpected {fig.alerts_unexpected}, wrong children {fig.alerts_wrong_children}"
        + (f", falsified and in review {fig.alerts_reviewed}" if fig.alerts_reviewed else ""),
        f"audit trail             {'verifies' if fig.audit_ok else 'FAILS'} "
        f"({fig.audit_records} records)",
        f"worker crashes          {fig.worker_crashes}",
        f"duration                {fig.seconds}s",
    ]
    if fig.problems:
        lines += ["", "DIFFERENCES:", *(f"  - {p}" for p in fig.problems)]
    else:
        lines += ["", "OK: nothing lost, nothing doubled"]
    return "\n".join(lines)


def merge_results(fig: Figures, path: Path = RESULTS) -> None:
    """Read, update and write: other benchmarks own the other keys of the file."""
    results: dict[str, Any] = orjson.loads(path.read_bytes()) if path.exists() else {}
    results.update(
        {
            "fault_events": fig.events,
            "fault_kills": fig.kills,
            "fault_rebalances": fig.rebalances,
            "fault_alerts_expected": fig.alerts_expected,
            "fault_alerts_missing": fig.alerts_missing,
            "fault_alerts_duplicated": fig.alerts_duplicated,
        }
    )
    path.write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--events", type=int, default=50_000, help="messages to publish")
    p.add_argument("--kills", type=int, default=20, help="worker SIGKILLs")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--rebalances", type=int, default=None, help="workers added/stopped")
    p.add_argument("--pauses", type=int, default=None, help="broker SIGSTOP/SIGCONT pauses")
    p.add_argument("--pg-restarts", type=int, default=None, help="PostgreSQL restarts")
    p.add_argument("--batch", type=int, default=500, help="worker batch size")
    p.add_argument("--stall-s", type=float, default=180.0, help="fail after no progress this long")
    p.add_argument("--results", action="store_true", help="merge into benchmarks/results.json")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    p.add_argument(
        "--move-outs",
        action="store_true",
        help="also move people out (late facts that falsify alerts: those must be in review)",
    )
    return p


def _workdir() -> Iterator[Path]:
    # Under /var/tmp: the embedded server may run as its own user (see lookout.embedded).
    base = Path("/var/tmp") if Path("/var/tmp").is_dir() else None  # noqa: S108
    path = Path(tempfile.mkdtemp(prefix="lookout-faults-", dir=base))
    path.chmod(0o755)
    yield path


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.rebalances = max(2, args.kills // 4) if args.rebalances is None else args.rebalances
    args.pauses = max(1, args.kills // 6) if args.pauses is None else args.pauses
    args.pg_restarts = (
        (1 if args.kills < 10 else 2) if args.pg_restarts is None else args.pg_restarts
    )
    workdir = next(_workdir())
    harness = Harness(args, workdir)
    try:
        fig = asyncio.run(harness.run())
    finally:
        harness.stop()
        if args.keep or harness.fig.problems:
            print(f"work folder kept: {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(fig), flush=True)
    if args.results:
        merge_results(fig)
    return 1 if fig.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
