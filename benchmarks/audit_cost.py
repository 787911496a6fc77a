"""What auditing costs on the worker's path: the same pipeline over the same synthetic
batches, with the audit insert on and with it skipped.

    .venv/bin/python benchmarks/audit_cost.py [--batches 30] [--batch-size 300] [--rounds 3]

Starts its own embedded PostgreSQL (durable: fsync on, like production) unless
LOOKOUT_DATABASE_URL names a server (databases ``bench_audit_*`` are created on it).
Each round runs both modes on fresh databases, alternating which goes first. A batch is
``process_batch`` plus its COMMIT, exactly as the worker runs it (no broker: messages are
built in memory). "Off" replaces ``lookout.pipeline.record`` by a no-op and changes
nothing else. Also reported: the time spent inside ``record`` itself in the "on" runs.
Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import orjson

from lookout import pipeline
from lookout.audit.service import Actor, Entry
from lookout.db import create_engine, session_factory
from lookout.embedded.postgres import EmbeddedPostgres
from lookout.identity.identifiers import nhs_number_check_digit
from lookout.ingest.catalogue import Catalogue
from lookout.ingest.repository import Position
from lookout.migrations import upgrade
from lookout.orgs import service
from lookout.orgs.models import OrgKind
from lookout.pipeline import Message, PipelineConfig, process_batch
from lookout.rules.model import load_rules
from lookout.settings import PROJECT_ROOT

LA = "E09000012"
HOSPITAL = "urn:lookout:agency:bench-hospital"
COUNCIL = "urn:lookout:agency:bench-council"
NOW = datetime.now(UTC).replace(microsecond=0)
_serial = itertools.count(1)
_real_record = pipeline.record  # type: ignore[attr-defined]


def _nhs() -> str:
    while True:
        body = f"9{next(_serial):08d}"
        digit = nhs_number_check_digit(body)
        if digit is not None:
            return body + str(digit)


def _event(type_: str, source: str, data: dict[str, Any], at: datetime) -> bytes:
    n = next(_serial)
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": f"bench-{n}",
            "source": source,
            "type": f"uk.lookout.{type_}.v1",
            "time": at.isoformat(),
            "subject": f"ref-{n}",
            "data": data,
        }
    )


def _family(uprn: str) -> list[bytes]:
    """An adult and a child move in; the adult attends ED for alcohol: one alert."""
    address = {"uprn": uprn, "la_code": LA}
    since = date(NOW.year - 1, 1, 1).isoformat()
    adult = {"nhs_number": _nhs(), "birth_date": date(NOW.year - 35, 5, 5).isoformat()}
    child = {"nhs_number": _nhs(), "birth_date": date(NOW.year - 4, 5, 5).isoformat()}
    moved = NOW - timedelta(days=200)
    return [
        _event(
            "person.residence",
            COUNCIL,
            {"person": p, "address": address, "change": "moved_in", "date": since},
            moved,
        )
        for p in (adult, child)
    ] + [
        _event(
            "health.ed_attendance",
            HOSPITAL,
            {"patient": adult, "site_ods_code": "RQXM1", "presenting_reasons": ["alcohol"]},
            NOW - timedelta(hours=1),
        )
    ]


def make_batches(batches: int, size: int) -> list[list[bytes]]:
    out = []
    for b in range(batches):
        raw: list[bytes] = []
        for f in range(size // 3):
            raw.extend(_family(f"{100000000000 + b * 1000 + f}"))
        out.append(raw)
    return out


def config() -> PipelineConfig:
    return PipelineConfig(
        catalogue=Catalogue.load(PROJECT_ROOT / "schemas"),
        rules=load_rules(PROJECT_ROOT / "rules"),
        group_id="bench",
        cluster_id="bench",
        max_event_bytes=256 * 1024,
        max_future_skew=timedelta(minutes=5),
        alerting_horizon=timedelta(days=30),
        timezone=ZoneInfo("Europe/London"),
        clock=lambda: NOW,
    )


async def fresh_database(server_url: str, name: str) -> str:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = server_url.rpartition("/")[0] + "/" + name
    await asyncio.to_thread(upgrade, url)
    return url


async def run_mode(url: str, batches: list[list[bytes]], audit: bool) -> dict[str, Any]:
    engine = create_engine(url, pool_size=2)
    sessions = session_factory(engine)
    bench = Actor(client_id="bench")
    async with sessions() as session, session.begin():
        for org_id, source in (("bench-hospital", HOSPITAL), ("bench-council", COUNCIL)):
            await service.create_org(
                session, bench, org_id=org_id, name=org_id, kind=OrgKind.agency, source=source
            )
        await service.create_org(
            session, bench, org_id="cs", name="cs", kind=OrgKind.children_services, la_code=LA
        )
    in_record = 0.0

    async def timed_record(session: Any, actor: Actor, entries: Sequence[Entry]) -> None:
        nonlocal in_record
        started = time.perf_counter()
        await _real_record(session, actor, entries)
        in_record += time.perf_counter() - started

    async def skipped(session: Any, actor: Actor, entries: Sequence[Entry]) -> None:
        return None

    setattr(pipeline, "record", timed_record if audit else skipped)  # noqa: B010
    cfg = config()
    times: list[float] = []
    positions: dict[tuple[str, int], Position | None] = {}
    offset = alerts = 0
    try:
        for raw in batches:
            messages = [Message("events", 0, offset + i, b"k", v) for i, v in enumerate(raw)]
            started = time.perf_counter()
            async with sessions() as session, session.begin():
                result = await process_batch(session, messages, cfg, positions)
            times.append(time.perf_counter() - started)
            offset += len(messages)
            positions[("events", 0)] = Position("bench", offset)
            alerts += len(result.alerts)
        async with engine.connect() as conn:
            rows = (await conn.exec_driver_sql("SELECT count(*) FROM audit_records")).scalar()
    finally:
        setattr(pipeline, "record", _real_record)  # noqa: B010
        await engine.dispose()
    return {
        "total_s": sum(times),
        "median_batch_s": statistics.median(times),
        "in_record_s": in_record,
        "alerts": alerts,
        "audit_rows": rows,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    server_url = os.environ.get("LOOKOUT_DATABASE_URL", "")
    workdir: Path | None = None
    pg: EmbeddedPostgres | None = None
    if not server_url:
        workdir = Path(tempfile.mkdtemp(prefix="lookout-bench-"))
        workdir.chmod(0o755)
        pg = EmbeddedPostgres.start(workdir / "pg", durable=True)
        server_url = pg.url
    try:
        rounds = []
        for r in range(args.rounds):
            result: dict[str, Any] = {}
            order = (True, False) if r % 2 == 0 else (False, True)
            for audit in order:
                url = await fresh_database(server_url, f"bench_audit_{'on' if audit else 'off'}")
                batches = make_batches(args.batches, args.batch_size)
                result["on" if audit else "off"] = await run_mode(url, batches, audit)
            rounds.append(result)
        on = [r["on"]["total_s"] for r in rounds]
        off = [r["off"]["total_s"] for r in rounds]
        share = [r["on"]["in_record_s"] / r["on"]["total_s"] for r in rounds]
        return {
            "batches": args.batches,
            "events_per_batch": (args.batch_size // 3) * 3,
            "rounds": rounds,
            "median_total_on_s": statistics.median(on),
            "median_total_off_s": statistics.median(off),
            "overhead_vs_off_pct": 100 * (statistics.median(on) / statistics.median(off) - 1),
            "share_of_worker_time_in_audit_insert_pct": 100 * statistics.median(share),
        }
    finally:
        if pg is not None:
            pg.stop()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    summary = asyncio.run(main(parser.parse_args()))
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
