"""The worker's batch cost in-process: CPU time per event of ``process_batch``.

    .venv/bin/python -m benchmarks.batch_profile [--persons 20000] [--events 10000]
        [--batch 2000] [--profile out.pstats] [--data-dir DIR] [--default-gc]

Runs the production code path exactly as the worker runs each batch (``process_batch``
and its COMMIT, the rules in ``rules/``, auditing on) over the benchmark workload
(``benchmarks.workload``) against a synthetic population, but with the messages built in
memory instead of consumed from a broker, so the figure is the pipeline's own cost.

Reports, per batch and in total: wall time and this process's CPU time
(``time.process_time``: PostgreSQL's work runs in its own processes and is not counted),
so that before/after comparisons on a shared host can use CPU ms per event, which
waiting for a CPU does not inflate. The clock is fixed (the start of the day), so every
run of the day processes the same events, and ``outcome_digest`` fingerprints what the
batches left behind (alerts with their evidence and outbox rows, the derived graph, the
audit trail): a change that keeps the semantics keeps the digest at the same ``--batch``.
Across batch sizes the digests differ by design: an alert raised in one batch and
falsified by a fact in a later one stays, marked for review (DESIGN.md "Order does not
matter"), where one larger batch never raises it, and an alert that names a child such a
fact shows was not there keeps the child and is marked for review too; the alerts not in
review are the same.
The garbage collector is tuned as the worker tunes it (``lookout.runtime.tune_gc``);
``--default-gc`` leaves the interpreter's defaults, to measure what that tuning saves.
``--profile`` adds cProfile (every figure inflated alike; its clock is this process's CPU
time) and prints the pipeline's stages by cumulative CPU time and the functions with the
most CPU time of their own (coroutines and SQLAlchemy's greenlets blur the cumulative
figures: read them as a rough split).

The embedded PostgreSQL (durable) keeps its data in ``--data-dir`` (a temporary folder
by default); the loaded population is kept there as a template database, so repeated
runs with the same ``--data-dir``, size and seed skip the load and start from the same
state.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import pstats
import tempfile
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from benchmarks.harness import register_orgs
from benchmarks.workload import Generator, events
from lookout.db import create_engine, session_factory
from lookout.embedded.postgres import EmbeddedPostgres
from lookout.ingest.catalogue import Catalogue
from lookout.ingest.repository import Position
from lookout.migrations import upgrade
from lookout.pipeline import Message, PipelineConfig, process_batch
from lookout.population import bulk_load, generate
from lookout.rules.model import load_rules
from lookout.runtime import tune_gc
from lookout.settings import PROJECT_ROOT, Settings

PARTITIONS = 8
TOPIC = "lookout.events"

# Functions whose cumulative time the --profile summary lists (the pipeline's stages).
STAGES = (
    ("pipeline.py", "process_batch"),
    ("validation.py", "validate"),
    ("service.py", "resolve"),
    ("repository.py", "insert_events"),
    ("service.py", "rebuild_graph"),
    ("pipeline.py", "_trigger_events_in"),
    ("pipeline.py", "_evaluate"),
    ("service.py", "snapshots"),
    ("pipeline.py", "_history"),
    ("repository.py", "events_of"),
    ("evaluator.py", "evaluate"),
    ("service.py", "review_unsupported"),
    ("service.py", "apply"),
    ("service.py", "publish"),
    ("service.py", "record"),
)


async def _database(server: str, persons: int, seed: int) -> str:
    """A fresh database cloned from the population template (made on first use)."""
    template = f"pop_{persons}_{seed}"
    conn = await asyncpg.connect(server)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", template)
    finally:
        await conn.close()
    base = server.rpartition("/")[0]
    url = f"{base}/{template}"
    if exists:  # kept from an earlier run: bring it to the current schema
        await asyncio.to_thread(upgrade, url)
    else:
        conn = await asyncpg.connect(server)
        try:
            await conn.execute(f'CREATE DATABASE "{template}"')
        finally:
            await conn.close()
        await asyncio.to_thread(upgrade, url)
        pop = generate(persons, seed, as_of=datetime.now(UTC).date())
        conn = await asyncpg.connect(url)
        try:
            await bulk_load(conn, pop)
        finally:
            await conn.close()
        await register_orgs(url)
    conn = await asyncpg.connect(server)
    try:
        await conn.execute('DROP DATABASE IF EXISTS "batch_run" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "batch_run" TEMPLATE "{template}"')
    finally:
        await conn.close()
    return f"{base}/batch_run"


# What the batches left behind, without the random alert and rejection ids: equal digests
# before and after a change mean the same alerts, evidence, outbox and graph. Left out:
# the outbox's event sequence numbers, and the order of audit rows in one transaction
# (alerts marked for review together are numbered in the order of their random ids).
_OUTCOME = (
    """SELECT a.rule_id, a.rule_version, a.household_id, a.recipient_key, a.recipient_org_id,
              a.status, a.summary, a.children::text, a.explanation::text, a.trigger_event_id,
              a.trigger_time, a.review_reason, a.sequence, a.review_by IS NULL,
              (SELECT array_agg(e.event_id || ':' || e.role ORDER BY e.event_id)
               FROM alert_evidence e WHERE e.alert_id = a.id),
              (SELECT array_agg(v.org_id || ':' || v.type || ':' || v.alert_sequence || ':'
                                || v.details::text ORDER BY v.org_id, v.sequence)
               FROM alert_events v WHERE v.alert_id = a.id)
       FROM alerts a ORDER BY 1, 3, 4, 10""",
    *(
        f"SELECT (to_jsonb(t) - 'id')::text AS row FROM {table} t ORDER BY 1"  # noqa: S608
        for table in ("residences", "flags", "enrolments", "relationships")
    ),
    "SELECT count(*), sum(id), count(retracted_by) FROM events",
    # Audit rows by transaction (within one, the order of alerts marked for review follows
    # their random ids), an alert named by what it is rather than by its random id.
    """SELECT r.action, r.object_type,
              CASE WHEN r.object_type NOT IN ('alert', 'rejection') THEN r.object_id END,
              a.rule_id, a.household_id, a.recipient_key, a.trigger_event_id,
              r.outcome, r.details::text
       FROM audit_records r LEFT JOIN alerts a ON r.object_type = 'alert'
           AND a.id::text = r.object_id
       ORDER BY r.xid, 1, 2, 3, 4, 5, 6, 7, 8, 9""",
)


async def _digest(url: str) -> tuple[str, list[str]]:
    conn = await asyncpg.connect(url)
    try:
        digest = hashlib.sha256()
        lines = []
        for query in _OUTCOME:
            for row in await conn.fetch(query):
                lines.append(repr(tuple(row)))
                digest.update(lines[-1].encode())
        return digest.hexdigest()[:16], lines
    finally:
        await conn.close()


def _config(now: datetime) -> PipelineConfig:
    s = Settings()
    return PipelineConfig(
        catalogue=Catalogue.load(PROJECT_ROOT / "schemas"),
        rules=load_rules(PROJECT_ROOT / "rules"),
        group_id="batch-profile",
        cluster_id="batch-profile",
        max_event_bytes=s.max_event_bytes,
        max_future_skew=timedelta(seconds=s.max_future_skew_s),
        alerting_horizon=timedelta(days=s.alerting_horizon_days),
        timezone=ZoneInfo(s.timezone),
        clock=lambda: now,
        review_after=timedelta(days=s.alert_review_days),
    )


async def run(args: argparse.Namespace, server: str) -> tuple[dict[str, Any], list[str]]:
    url = await _database(server, args.persons, args.seed)
    # A fixed clock (the start of today, UTC) for the workload and the pipeline: the
    # same events and outcome (digest) in every run of the day.
    now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    pop = generate(args.persons, args.seed, as_of=now.date())
    if not args.default_gc:
        tune_gc()  # as the worker does at start-up (the population is frozen with it)
    raw = list(events(Generator(pop, args.seed + 10, now, prefix="batch"), args.events))
    offsets = [0] * PARTITIONS
    messages: list[Message] = []
    for key, value in raw:
        p = zlib.crc32(key) % PARTITIONS
        messages.append(Message(TOPIC, p, offsets[p], key, value))
        offsets[p] += 1
    config = _config(now)
    engine = create_engine(url, pool_size=2)
    sessions = session_factory(engine)
    positions: dict[tuple[str, int], Position | None] = {}
    # CPU time, not wall: waiting for PostgreSQL or for a CPU is not this process's cost.
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    batches: list[dict[str, float]] = []
    alerts = 0
    try:
        for start in range(0, len(messages), args.batch):
            chunk = messages[start : start + args.batch]
            wall, cpu = time.perf_counter(), time.process_time()
            if profiler:
                profiler.enable()
            async with sessions() as session, session.begin():
                result = await process_batch(session, chunk, config, dict(positions))
            if profiler:
                profiler.disable()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            for m in chunk:
                positions[(m.topic, m.partition)] = Position("batch-profile", m.offset + 1)
            alerts += len(result.alerts)
            batches.append({"events": len(chunk), "wall_s": wall, "cpu_s": cpu})
            print(
                f"batch {len(batches)}: {len(chunk)} events, {wall:.2f} s wall, "
                f"{cpu:.2f} s CPU, {len(result.alerts)} alerts",
                flush=True,
            )
        digest, rows = await _digest(url)
    finally:
        await engine.dispose()
    total = sum(b["events"] for b in batches)
    wall = sum(b["wall_s"] for b in batches)
    cpu = sum(b["cpu_s"] for b in batches)
    if profiler:
        profiler.dump_stats(args.profile)
        stats = pstats.Stats(profiler)
        print("stage cumulative seconds (cProfile):")
        for (file, _, name), row in stats.stats.items():  # type: ignore[attr-defined]
            if (Path(file).name, name) in STAGES and "lookout" in file:
                print(f"  {Path(file).parent.name}/{Path(file).name}:{name}  {row[3]:.2f}")
        print("top functions by own CPU time:")
        stats.sort_stats("tottime").print_stats(25)
    summary = {
        "outcome_digest": digest,
        "events": total,
        "alerts": alerts,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_event": round(1000 * cpu / total, 3),
        "events_per_s_wall": round(total / wall),
    }
    return summary, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--persons", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--dump", type=Path, help="write the rows the digest covers here")
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="leave the interpreter's garbage collection settings (no lookout.runtime.tune_gc)",
    )
    args = parser.parse_args()
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="lookout-batch-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o755)
    pg = EmbeddedPostgres.start(data_dir / "pg", durable=True)
    try:
        summary, rows = asyncio.run(run(args, pg.url))
    finally:
        pg.stop()
    if args.dump:
        args.dump.write_text("\n".join(rows) + "\n")
    print(summary)


if __name__ == "__main__":
    main()
