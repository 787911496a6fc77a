"""Identity and household graph benchmark.

    python -m benchmarks.identity_bench --persons 1000000

Generates a synthetic population (:mod:`lookout.population`), bulk-loads it with COPY into
a fresh database (an embedded PostgreSQL unless ``LOOKOUT_BENCH_DATABASE_URL`` points at a
server), then measures through the real code paths:

* household snapshot latency (``lookout.household.service.snapshots``) as of a random
  date, one household per call, p50/p99;
* strong-identifier linking throughput (``lookout.identity.service.resolve``) on batches
  of person references carrying NHS numbers (90% known persons, 10% new), one worker,
  one transaction per batch, as the worker does;
* demographics-only linking throughput (blocking in PostgreSQL + Fellegi-Sunter scoring)
  on references with names, date of birth and postcode, some with typos.

Writes ``benchmarks/results.json`` (merged with the keys already there).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from lookout.db import create_engine, session_factory
from lookout.household import repository as household_repository
from lookout.household import service as household
from lookout.identity.identifiers import nhs_number_check_digit
from lookout.identity.service import PersonRef, resolve
from lookout.migrations import upgrade
from lookout.population import Population, SynthPerson, bulk_load, generate

RESULTS = Path(__file__).resolve().parent / "results.json"
# The snapshot statement (asyncpg's positional parameters), for EXPLAIN ANALYZE.
SNAPSHOT_SQL = household_repository._SNAPSHOT


@contextlib.contextmanager
def database() -> Iterator[str]:
    url = os.environ.get("LOOKOUT_BENCH_DATABASE_URL")
    if url:
        yield url
        return
    from lookout.embedded.postgres import EmbeddedPostgres

    workdir = Path(tempfile.mkdtemp(prefix="lookout-bench-"))
    workdir.chmod(0o755)
    try:
        with EmbeddedPostgres.start(workdir / "pg", durable=False) as pg:
            yield pg.url
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def typo(rng: random.Random, p: SynthPerson) -> dict[str, Any]:
    """A demographics-only reference to ``p``, sometimes with a clerk's slip."""
    ref: dict[str, Any] = {
        "given_name": p.given_name,
        "family_name": p.family_name,
        "birth_date": p.birth_date.isoformat(),
        "postcode": p.postcode,
    }
    roll = rng.random()
    if roll < 0.15 and p.birth_date.day <= 12:
        ref["birth_date"] = date(
            p.birth_date.year, p.birth_date.day, p.birth_date.month
        ).isoformat()
    elif roll < 0.3:
        ref["given_name"] = p.given_name[:-1] or p.given_name
    elif roll < 0.4:
        del ref["postcode"]
    return ref


async def bench(persons: int, seed: int, samples: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with database() as server_url:
        conn = await asyncpg.connect(server_url)
        name = f"bench_{seed}_{persons}"
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        url = server_url.rpartition("/")[0] + "/" + name
        await asyncio.to_thread(upgrade, url)

        started = time.perf_counter()
        pop = generate(persons, seed)
        results["population_generate_s"] = round(time.perf_counter() - started, 2)
        print(f"generated {len(pop.persons):,} persons in {results['population_generate_s']} s")
        conn = await asyncpg.connect(url)
        started = time.perf_counter()
        counts = await bulk_load(conn, pop)
        results["population_load_s"] = round(time.perf_counter() - started, 2)
        await conn.close()
        results["population_persons"] = counts["persons"]
        results["population_households"] = counts["households"]
        results["population_rows"] = counts
        print(f"loaded {counts} in {results['population_load_s']} s")

        engine = create_engine(url, pool_size=2)
        sessions = session_factory(engine)
        try:
            results.update(await snapshot_latency(sessions, pop, seed, samples))
            results.update(await strong_links(sessions, pop, seed))
            results.update(await demographic_links(sessions, pop, seed))
        finally:
            await engine.dispose()
    return results


async def snapshot_latency(
    sessions: Any, pop: Population, seed: int, samples: int
) -> dict[str, Any]:
    rng = random.Random(seed)  # noqa: S311 - benchmark sampling
    start = pop.as_of - timedelta(days=3 * 365)  # recent: when events are evaluated
    timings: list[float] = []
    members = 0
    async with sessions() as session:
        for warm in range(50):  # warm the pool and plan cache
            await household.snapshots(session, [(warm + 1, pop.as_of)])
        for _ in range(samples):
            h = rng.randrange(len(pop.households)) + 1
            on = start + timedelta(days=rng.randrange((pop.as_of - start).days))
            t = time.perf_counter()
            [snap] = await household.snapshots(session, [(h, on)])
            timings.append((time.perf_counter() - t) * 1000)
            members += len(snap.members)
        # The database's own execution time for the same statement (EXPLAIN ANALYZE), to
        # tell server time from client and scheduling time in the tail.
        server: list[float] = []
        conn = await session.connection()
        for _ in range(min(500, samples)):
            h = rng.randrange(len(pop.households)) + 1
            on = start + timedelta(days=rng.randrange((pop.as_of - start).days))
            plan = await conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + str(SNAPSHOT_SQL), ([h], [on])
            )
            server.append(float(plan.scalar_one()[0]["Execution Time"]))
        await session.rollback()
    out = {
        "household_snapshot_server_p50_ms": round(percentile(server, 0.5), 3),
        "household_snapshot_server_p99_ms": round(percentile(server, 0.99), 3),
        "household_snapshot_samples": samples,
        "household_snapshot_p50_ms": round(percentile(timings, 0.5), 3),
        "household_snapshot_p99_ms": round(percentile(timings, 0.99), 3),
        "household_snapshot_mean_members": round(members / samples, 2),
    }
    print(f"snapshots: {out}")
    return out


def _unused_nhs_numbers() -> Iterator[str]:
    """Valid NHS numbers the population generator never issues (its bodies stay below
    500,000,000; these count up from 900,000,000)."""
    body = 900_000_000
    while True:
        body += 1
        check = nhs_number_check_digit(f"{body:09d}")
        if check is not None:
            yield f"{body:09d}{check}"


async def strong_links(
    sessions: Any, pop: Population, seed: int, batches: int = 20, size: int = 1000
) -> dict[str, Any]:
    rng = random.Random(seed + 1)  # noqa: S311 - benchmark sampling
    new_nhs = _unused_nhs_numbers()
    total, elapsed = 0, 0.0
    for _ in range(batches):
        refs = []
        for _ in range(size):
            if rng.random() < 0.9:
                p = pop.persons[rng.randrange(len(pop.persons))]
                ref: dict[str, Any] = {
                    "nhs_number": p.nhs_number,
                    "given_name": p.given_name,
                    "family_name": p.family_name,
                    "birth_date": p.birth_date.isoformat(),
                }
                if p.upn and rng.random() < 0.5:
                    ref["upn"] = p.upn
            else:
                # A person new to Lookout, with an NHS number new to it. All share one name
                # and date of birth: the worst case for the demographic blocks that a
                # reference with new identifiers is also matched in (each newcomer's
                # blocks hold every earlier one, all holding an NHS number).
                ref = {
                    "nhs_number": next(new_nhs),
                    "family_name": "Newcomer",
                    "birth_date": "1990-01-01",
                }
            refs.append(PersonRef("synth-hospital", ref))
        async with sessions() as session, session.begin():
            t = time.perf_counter()
            await resolve(session, refs)
            elapsed += time.perf_counter() - t
        total += len(refs)
    out = {
        "strong_id_link_events": total,
        "strong_id_link_batch": size,
        "strong_id_link_events_per_s": round(total / elapsed),
    }
    print(f"strong-id linking: {out}")
    return out


async def demographic_links(
    sessions: Any, pop: Population, seed: int, batches: int = 10, size: int = 200
) -> dict[str, Any]:
    rng = random.Random(seed + 2)  # noqa: S311 - benchmark sampling
    total, elapsed = 0, 0.0
    for _ in range(batches):
        refs = [
            PersonRef("synth-hospital", typo(rng, pop.persons[rng.randrange(len(pop.persons))]))
            for _ in range(size)
        ]
        async with sessions() as session, session.begin():
            t = time.perf_counter()
            await resolve(session, refs)
            elapsed += time.perf_counter() - t
        total += len(refs)
    out = {
        "demographic_link_events": total,
        "demographic_link_events_per_s": round(total / elapsed),
    }
    print(f"demographic linking: {out}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--samples", type=int, default=5_000, help="snapshot samples")
    args = parser.parse_args()
    results = asyncio.run(bench(args.persons, args.seed, args.samples))
    # results.json is one flat object of numbers (the machine is described in BENCHMARKS.md).
    results |= {f"population_rows_{k}": v for k, v in results.pop("population_rows").items()}
    existing = orjson.loads(RESULTS.read_bytes()) if RESULTS.exists() else {}
    existing.pop("machine", None)
    existing.pop("population_rows", None)
    existing.update(results)
    RESULTS.write_bytes(
        orjson.dumps(existing, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
