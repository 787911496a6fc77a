"""``GET /v1/alerts`` under concurrent load, with many alerts in the table.

The alerts are written straight into the database with COPY (test data: what months of
worker output would leave behind), spread over the population's households and each
local authority's children's services, numbered per organisation as the worker numbers
them, with explanations of the evaluator's shape and size. The API is the real one
(``python -m lookout api``: uvicorn, one process); the load comes from a separate process
(:mod:`benchmarks.api_load`). Only PostgreSQL and the API run while it is measured.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from benchmarks.harness import Servers, access_token, start_api
from lookout.population import Population
from lookout.rules.model import load_rules
from lookout.settings import PROJECT_ROOT


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
    rules = load_rules(PROJECT_ROOT / "rules")
    now = datetime.now(UTC)
    conn = await asyncpg.connect(url)
    try:
        events = int(await conn.fetchval("SELECT count(*) FROM events"))
        min_event = int(await conn.fetchval("SELECT min(id) FROM events"))
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
            rows.append(
                (
                    uuid.uuid4(),
                    rule.id,
                    rule.version,
                    rule.spec.severity.value,
                    h + 1,
                    f"children_services:{household.la_code}",
                    f"cs-{household.la_code.lower()}",
                    "new" if rng.random() < 0.6 else "acknowledged",
                    " ".join(rule.spec.summary.split()),
                    orjson.dumps(kids).decode(),
                    _explanation(rule.id, rule.version, h + 1, household.la_code, kids),
                    min_event + rng.randrange(events),
                    created - timedelta(minutes=1),
                    created,
                    created,
                    created + timedelta(days=90),
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


async def run(
    servers: Servers, url: str, orgs: list[str], *, concurrency: int, seconds: float
) -> dict[str, Any]:
    """Start the API, get a token per organisation, run the load client process."""
    api, base = await start_api(servers, url, token_secret="bench-" + uuid.uuid4().hex)
    try:
        tokens = [await access_token(url, base, org) for org in orgs]
        argv = [sys.executable, "-m", "benchmarks.api_load", "--url", base]
        argv += [x for t in tokens for x in ("--token", t)]
        argv += ["--concurrency", str(concurrency), "--seconds", str(seconds)]
        done = await asyncio.to_thread(
            subprocess.run,
            argv,
            capture_output=True,
            text=True,
            check=False,
            timeout=seconds + 120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"api_load failed:\n{done.stderr[-3000:]}")
        result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
        api.check()
        result["api_rss_mb_peak"] = api.rss_mb()[1]
        return result
    finally:
        api.stop()
