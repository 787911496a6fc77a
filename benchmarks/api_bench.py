"""``GET /v1/alerts`` under concurrent load, with many alerts in the table.

The alerts are written straight into the database with COPY (test data: what months of
worker output would leave behind), spread over the population's households and each
local authority's children's services, numbered per organisation as the worker numbers
them, with explanations of the evaluator's shape and size. The API is the real one
(``python -m lookout api``: uvicorn, one process); the load comes from a separate process
(:mod:`benchmarks.api_load`). Only PostgreSQL and the API run while it is measured.

Besides latency it reports CPU: the API's processes' CPU time over the measured seconds per
request (from ``/proc``, the uvicorn process and any worker processes it started), and the
load client's own, since all of them share the host's cores. ``profile`` runs py-spy on the
API during the measurement (raw stacks, for a flame graph or a grep).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from benchmarks.harness import Servers, access_token, start_api
from lookout.population import Population
from lookout.rules.model import load_rules
from lookout.settings import PROJECT_ROOT

# The teams alerts are assigned to (in every organisation): the team-queue load reads them.
TEAMS = tuple(f"team-{n}" for n in range(20))


def _explanation(rule_id: str, version: str, household: int, la: str, kids: list[int]) -> str:
    return orjson.dumps(
        {
            "rule": {"id": rule_id, "version": version, "title": "Benchmark alert"},
            "household": {"id": household, "la_code": la, "as_of": "2026-11-01", "members": 4},
            "conditions": [
                {
                    "id": "trigger",
                    "description": "An adult's ED attendance coded as alcohol related",
                    "result": True,
                    "events": [
                        {
                            "source": "urn:lookout:agency:synth-hospital",
                            "id": f"bench-{household}",
                            "type": "uk.lookout.health.ed_attendance.v1",
                            "time": "2026-11-01T12:00:00+00:00",
                        }
                    ],
                    "subject": {"person_id": kids[0] - 1 if kids else 1, "age": 34},
                },
                {
                    "id": "child_in_household",
                    "description": "A child (under 18 at the event time) lives in the household",
                    "result": True,
                    "members": [{"person_id": k, "age": 7, "joined": "2020-01-01"} for k in kids],
                },
            ],
            "lawful_basis": "Children Act 1989 s.47 and Children Act 2004 s.11; UK GDPR "
            "Art. 6(1)(e) and Art. 9(2)(g) with DPA 2018 Sch. 1 para 18.",
        }
    ).decode()


async def seed_alerts(url: str, pop: Population, count: int, seed: int = 1) -> dict[str, int]:
    """``count`` alerts over the population's households; returns alerts per organisation."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data
    work = random.Random(seed + 1)  # noqa: S311 - assignments, apart from the rest
    rules = load_rules(PROJECT_ROOT / "rules")
    now = datetime.now(UTC)
    conn = await asyncpg.connect(url)
    try:
        # The stored events' ids: a batch that was retried leaves gaps in the sequence.
        event_ids: list[int] = await conn.fetchval("SELECT array_agg(id ORDER BY id) FROM events")
        rows: list[tuple[Any, ...]] = []
        households = rng.sample(range(len(pop.households)), min(count, len(pop.households)))
        while len(households) < count:  # more alerts than households: more rules each
            households += households[: count - len(households)]
        # Alerts the worker raised stay: no second open alert for the same (rule,
        # household), and numbering goes on from each organisation's last sequence.
        seen: set[tuple[str, int]] = {
            (r["rule_id"], r["household_id"] - 1)
            for r in await conn.fetch(
                "SELECT rule_id, household_id FROM alerts WHERE status <> 'closed'"
            )
        }
        last_sequence = {
            r["org_id"]: int(r["alert_last"])
            for r in await conn.fetch("SELECT org_id, alert_last FROM org_sequences")
        }
        for n, h in enumerate(households):
            household = pop.households[h]
            free = [
                r
                for r in (rules[(n + b) % len(rules)] for b in range(len(rules)))
                if (r.id, h) not in seen
            ]
            if not free:
                continue
            rule = free[0]
            seen.add((rule.id, h))
            kids = [m + 1 for m in household.members[-2:]]
            created = now - timedelta(seconds=rng.uniform(0, 90 * 86_400))
            status = "new" if rng.random() < 0.6 else "acknowledged"
            # Half of the acknowledged alerts are in a team's queue (TEAMS, about 1% of
            # an organisation's alerts each), as a children's services front door assigns.
            team = work.choice(TEAMS) if status == "acknowledged" and work.random() < 0.5 else None
            rows.append(
                (
                    uuid.uuid4(),
                    rule.id,
                    rule.version,
                    rule.spec.severity.value,
                    h + 1,
                    f"children_services:{household.la_code}",
                    f"cs-{household.la_code.lower()}",
                    status,
                    " ".join(rule.spec.summary.split()),
                    orjson.dumps(kids).decode(),
                    _explanation(rule.id, rule.version, h + 1, household.la_code, kids),
                    event_ids[rng.randrange(len(event_ids))],
                    created - timedelta(minutes=1),
                    created,
                    created,
                    created + timedelta(days=90),
                    None if team is None else "team",
                    team,
                    None if status == "new" else created + timedelta(hours=1),
                )
            )
        rows.sort(key=lambda r: r[13])
        per_org: dict[str, int] = {}
        numbered = []
        for r in rows:
            per_org[r[6]] = per_org.get(r[6], 0) + 1
            numbered.append((*r, last_sequence.get(r[6], 0) + per_org[r[6]]))
        await conn.copy_records_to_table(
            "alerts",
            records=numbered,
            columns=[
                "id",
                "rule_id",
                "rule_version",
                "severity",
                "household_id",
                "recipient_key",
                "recipient_org_id",
                "status",
                "summary",
                "children",
                "explanation",
                "trigger_event_id",
                "trigger_time",
                "created_at",
                "updated_at",
                "review_by",
                "assignee_kind",
                "assignee",
                "acknowledged_at",
                "sequence",
            ],
        )
        for org, last in per_org.items():
            await conn.execute(
                "INSERT INTO org_sequences (org_id, alert_last, event_last) VALUES ($1, $2, $2)"
                " ON CONFLICT (org_id) DO UPDATE SET alert_last = org_sequences.alert_last + $2,"
                " event_last = org_sequences.event_last + $2",
                org,
                last,
            )
        await conn.execute("ANALYZE alerts")
    finally:
        await conn.close()
    return per_org


def _tree_cpu_s(root: int) -> float:
    """User + system CPU seconds of ``root`` and its live descendants (Linux ``/proc``)."""
    ticks = float(os.sysconf("SC_CLK_TCK"))
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            # after the name: state ppid ... utime (14th field) stime (15th)
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    tree, total = {root}, 0.0
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _) in stats.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    for pid in tree:
        total += stats.get(pid, (0, 0.0))[1]
    return total


async def run(
    servers: Servers,
    url: str,
    orgs: list[str],
    *,
    concurrency: int,
    seconds: float,
    profile: Path | None = None,
    api_settings: dict[str, Any] | None = None,
    team_seconds: float = 0.0,
) -> dict[str, Any]:
    """Start the API, get a token per organisation, run the load client process: the
    unfiltered list for ``seconds`` (the API's CPU is sampled over this phase only), then,
    if ``team_seconds``, team queues (``?team=``) for that long."""
    api, base = await start_api(
        servers, url, token_secret="bench-" + uuid.uuid4().hex, **(api_settings or {})
    )
    spy: asyncio.subprocess.Process | None = None
    try:
        tokens = [await access_token(url, base, org) for org in orgs]
        argv = ["-m", "benchmarks.api_load", "--url", base]
        argv += [x for t in tokens for x in ("--token", t)]
        argv += ["--concurrency", str(concurrency), "--seconds", str(seconds)]
        if team_seconds > 0:
            argv += [x for t in TEAMS for x in ("--team", t)]
            argv += ["--team-seconds", str(team_seconds)]
        load = await asyncio.create_subprocess_exec(
            sys.executable, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        assert load.stdout is not None
        # The client says when its warm-up is over: sample the API's CPU (and run py-spy)
        # over the measured part only.
        ready = (await asyncio.wait_for(load.stdout.readline(), 60)).decode()
        if ready.strip() != "measuring":
            _, err = await asyncio.wait_for(load.communicate(), 30)
            raise RuntimeError(f"api_load failed:\n{ready}{err.decode()[-3000:]}")
        cpu_before = _tree_cpu_s(api.pid)
        if profile is not None:
            spy = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "py-spy"),
                "record", "--pid", str(api.pid), "--subprocesses", "--rate", "100",
                "--format", "raw", "--output", str(profile), "--nonblocking",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        cpu_after: float | None = None
        if team_seconds > 0:
            phase = (await asyncio.wait_for(load.stdout.readline(), seconds + 120)).decode()
            if phase.strip() == "team queues":
                cpu_after = _tree_cpu_s(api.pid)
        out, err = await asyncio.wait_for(load.communicate(), seconds + team_seconds + 120)
        if cpu_after is None:
            cpu_after = _tree_cpu_s(api.pid)
        stdout = out.decode()
        if load.returncode != 0:
            raise RuntimeError(f"api_load failed:\n{err.decode()[-3000:]}")
        result: dict[str, Any] = orjson.loads(stdout.strip().splitlines()[-1])
        api.check()
        result["api_rss_mb_peak"] = api.rss_mb()[1]
        # Sampled from the end of the warm-up to the client's exit: the same window as
        # the requests counted, give or take the client's start and stop.
        result["api_cpu_ms_per_request"] = (
            (cpu_after - cpu_before) * 1000 / result["requests"] if result["requests"] else 0.0
        )
        return result
    finally:
        if spy is not None:  # SIGINT: py-spy stops sampling and writes its output
            spy.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(spy.wait(), 60)
            except TimeoutError:
                spy.kill()
                await spy.wait()
        api.stop()
