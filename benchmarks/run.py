"""Every Lookout benchmark in one run: ``make bench`` (full) or ``make bench-quick``.

    python -m benchmarks.run            # full: 100,000 and 1,000,000 persons (20-40 min)
    python -m benchmarks.run --quick    # the same code at small sizes (under 2 minutes)
    python -m benchmarks.run --only api # just GET /v1/alerts under load (prints only)
    python -m benchmarks.run --only e2e # just the steady-rate latency runs (prints only)

Starts its own embedded PostgreSQL (durable, as in production) and bundled broker
(``LOOKOUT_BENCH_DATABASE_URL`` / ``LOOKOUT_BENCH_KAFKA_BOOTSTRAP_SERVERS`` to use your
own), then, per population size:

1. generates the synthetic population and COPY-loads its graph (:mod:`lookout.population`);
2. (largest population) the identity benchmarks: household snapshot latency and
   strong-identifier linking (:mod:`benchmarks.identity_bench`);
3. publishes a backlog of realistic events (:mod:`benchmarks.workload`), consumes and
   decodes it raw, then runs ONE ``lookout worker`` over it
   (:mod:`benchmarks.pipeline_bench`);

then, on the largest population's database: steady-rate publish-to-alert latency with
the worker and the API running; ``GET /v1/alerts`` under load with many alerts in the
table (:mod:`benchmarks.api_bench`); and the pure rule evaluator on one core
(:mod:`benchmarks.evaluator_bench`). Prints a table, merges its keys into
``benchmarks/results.json`` (the quick run: ``benchmarks/results-quick.json``), and
rewrites its generated section of ``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from benchmarks import api_bench, evaluator_bench, harness, identity_bench, pipeline_bench
from benchmarks.workload import Generator, events, now_utc

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results.json"
QUICK_RESULTS = ROOT / "benchmarks" / "results-quick.json"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"


@dataclass(frozen=True)
class Sizes:
    populations: tuple[int, ...]  # the last one gets the identity, e2e and API benchmarks
    backlogs: tuple[int, ...]  # events in the worker's backlog, per population
    snapshot_samples: int
    link_batches: int
    e2e: tuple[tuple[int, float], ...]  # (events/s, seconds); the first is the headline
    e2e_drain_s: float
    api_alerts: int
    api_concurrency: int
    api_seconds: float
    api_team_seconds: float  # then team queues (?team=), reported apart
    evaluator_cases: int
    evaluator_seconds: float


FULL = Sizes(
    populations=(100_000, 1_000_000),
    backlogs=(100_000, 200_000),
    snapshot_samples=5_000,
    link_batches=20,
    e2e=((1_000, 60.0), (5_000, 10.0), (200, 30.0)),
    e2e_drain_s=150.0,
    api_alerts=100_000,
    api_concurrency=8,
    api_seconds=30.0,
    api_team_seconds=15.0,
    evaluator_cases=5_000,
    evaluator_seconds=20.0,
)
QUICK = Sizes(
    populations=(10_000,),
    backlogs=(8_000,),
    snapshot_samples=300,
    link_batches=3,
    e2e=((1_000, 5.0),),
    e2e_drain_s=30.0,
    api_alerts=2_000,
    api_concurrency=4,
    api_seconds=5.0,
    api_team_seconds=3.0,
    evaluator_cases=1_000,
    evaluator_seconds=3.0,
)

# (key, what, target text, check) for the table; check(value) -> met?
TARGETS: tuple[tuple[str, str, str, Any], ...] = (
    ("population_persons", "persons loaded (largest population)", ">= 1,000,000",
     lambda v: v >= 1_000_000),
    ("worker_events_per_s", "one worker, backlog, largest population", ">= 10,000 (goal 20,000)",
     lambda v: v >= 10_000),
    ("worker_events_per_s_pop_100k", "one worker, backlog, 100,000 persons", "-", None),
    ("raw_consume_decode_events_per_s", "aiokafka consume + validate only", "measured", None),
    ("worker_to_raw_ratio", "worker / raw", "reported", None),
    ("e2e_rate_events_per_s", "steady producer rate achieved", ">= 1,000", lambda v: v >= 990),
    ("e2e_latency_p50_ms", "publish -> commit / alert in API, p50", "-", None),
    ("e2e_latency_p99_ms", "publish -> commit / alert in API, p99", "<= 250 (goal 100)",
     lambda v: v <= 250),
    ("e2e_drained", "every event of the run committed in time (1/0)", "1", lambda v: v == 1),
    ("e2e_host_busy_pct", "host CPU busy during that run, % of all CPUs", "reported", None),
    ("e2e_cpu_ms_per_event_worker", "CPU ms per event in that run: the worker", "reported",
     None),
    ("e2e_cpu_ms_per_event_postgres", "... PostgreSQL (all its processes)", "reported", None),
    ("e2e_cpu_ms_per_event_broker", "... the broker", "reported", None),
    ("e2e_cpu_ms_per_event_api", "... the API", "reported", None),
    ("e2e_cpu_ms_per_event_harness", "... the producer and pollers (the harness)", "reported",
     None),
    ("e2e_5000_rate_events_per_s", "steady producer rate achieved", "5,000", None),
    ("e2e_5000_latency_p99_ms", "p99 at 5,000/s", "<= 250", lambda v: v <= 250),
    ("e2e_5000_drained", "every event committed in time (1/0)", "1", lambda v: v == 1),
    ("e2e_200_latency_p50_ms", "p50 at 200/s (below the worker's capacity)", "-", None),
    ("e2e_200_latency_p99_ms", "p99 at 200/s", "<= 250", lambda v: v <= 250),
    ("rule_evaluations_per_s", "pure evaluator, all rules, one core", ">= 20,000",
     lambda v: v >= 20_000),
    ("household_snapshot_p99_ms", "household snapshot, p99", "<= 5", lambda v: v <= 5),
    ("strong_id_link_events_per_s", "strong-identifier linking", ">= 5,000",
     lambda v: v >= 5_000),
    ("api_alerts_list_p99_ms", "GET /v1/alerts page of 50, p99", "<= 50", lambda v: v <= 50),
    ("api_rps", "GET /v1/alerts requests/s", "reported", None),
    ("api_alerts_team_p99_ms", "GET /v1/alerts?team= (a team's queue) page of 50, p99", "-",
     None),
    ("worker_rss_mb_peak", "worker peak RSS, largest backlog", "bounded", None),
    ("worker_rss_mb_peak_half", "worker peak RSS at half of that backlog", "-", None),
    ("worker_rss_mb_peak_100k", "worker peak RSS, 100,000-event backlog", "-", None),
)  # fmt: skip


def _label(persons: int) -> str:
    return f"{persons // 1000}k" if persons < 1_000_000 else f"{persons // 1_000_000}m"


class _Progress:
    """Prints each stage with the time and the load average, and keeps the load averages
    for the run's conditions."""

    def __init__(self) -> None:
        self.loads: list[float] = []

    def __call__(self, stage: str) -> None:
        load = os.getloadavg()[0]
        self.loads.append(load)
        print(f"[{datetime.now(UTC):%H:%M:%S}] {stage} (load average {load:.2f})", flush=True)

    def conditions(self) -> dict[str, Any]:
        return {
            "bench_load_average_min": round(min(self.loads), 2),
            "bench_load_average_max": round(max(self.loads), 2),
            "bench_cpus": os.cpu_count() or 0,
        }


async def _api(
    servers: harness.Servers,
    loaded: harness.Loaded,
    sizes: Sizes,
    seed: int,
    note: _Progress,
    *,
    profile: Path | None = None,
    api_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``GET /v1/alerts`` under load with ``sizes.api_alerts`` alerts in the table."""
    note(f"API: {sizes.api_alerts:,} alerts in the table, GET /v1/alerts under load")
    await api_bench.seed_alerts(loaded.url, loaded.pop, sizes.api_alerts, seed)
    note("measuring")
    api = await api_bench.run(
        servers,
        loaded.url,
        loaded.children_services,
        concurrency=sizes.api_concurrency,
        seconds=sizes.api_seconds,
        profile=profile,
        api_settings=api_settings or {},
        team_seconds=sizes.api_team_seconds,
    )
    print(f"  api: {api}", flush=True)
    return {
        "api_alerts_in_table": sizes.api_alerts,
        "api_alerts_list_p50_ms": round(api["p50_ms"], 2),
        "api_alerts_list_p99_ms": round(api["p99_ms"], 2),
        "api_rps": round(api["rps"], 1),
        "api_concurrency": api["concurrency"],
        "api_errors": api["errors"],
        "api_cpu_ms_per_request": round(api["api_cpu_ms_per_request"], 2),
        "api_client_cpu_ms_per_request": round(api["client_cpu_ms_per_request"], 2),
        # After the unfiltered phase: team queues (?team=), the same connections.
        "api_alerts_team_p50_ms": round(api["team_p50_ms"], 2),
        "api_alerts_team_p99_ms": round(api["team_p99_ms"], 2),
        "api_team_rps": round(api["team_rps"], 1),
        "api_team_errors": api["team_errors"],
    }


async def bench(sizes: Sizes, seed: int, log_dir: Path, profile: Path | None) -> dict[str, Any]:
    r: dict[str, Any] = {}
    note = _Progress()

    with harness.servers() as servers:
        now = now_utc()
        last: harness.Loaded | None = None
        for persons, backlog in zip(sizes.populations, sizes.backlogs, strict=True):
            tag = _label(persons)
            note(f"population of {persons:,}: generate and COPY load")
            loaded = await harness.population_database(
                servers, f"bench_{tag}", persons, seed, now.date()
            )
            r[f"population_{tag}_load_s"] = round(loaded.load_s, 1)
            largest = persons == sizes.populations[-1]
            if largest:
                r["population_persons"] = loaded.counts["persons"]
                r["population_households"] = loaded.counts["households"]
                r["population_generate_s"] = round(loaded.generate_s, 1)
                r["population_load_s"] = round(loaded.load_s, 1)
                r |= {f"population_rows_{k}": v for k, v in loaded.counts.items()}
                note("identity: snapshots and strong-identifier linking")
                r |= await _identity(loaded, seed, sizes)
            gen = Generator(loaded.pop, seed + 10, now, prefix=f"backlog-{tag}")
            messages = list(events(gen, backlog))
            topic = f"bench.backlog.{tag}"
            note(f"publish a backlog of {len(messages):,} events")
            r[f"backlog_{tag}_publish_s"] = round(
                await pipeline_bench.publish(servers.bootstrap, topic, messages), 2
            )
            note("raw consume + decode")
            raw = await pipeline_bench.raw_consume(servers.bootstrap, topic, len(messages))
            note("one lookout worker over the backlog")
            worker = await pipeline_bench.worker_backlog(
                servers,
                loaded.url,
                topic,
                len(messages),
                log_dir=log_dir,
                profile=profile.with_suffix(f".{tag}.txt") if profile else None,
            )
            print(f"  worker: {worker}", flush=True)
            prefix = "" if largest else f"_pop_{tag}"
            r[f"worker_events_per_s{prefix}"] = round(worker["events_per_s"])
            r[f"raw_consume_decode_events_per_s{prefix}"] = round(raw["events_per_s"])
            r[f"worker_to_raw_ratio{prefix}"] = round(
                worker["events_per_s"] / raw["events_per_s"], 4
            )
            r[f"worker_backlog_events{prefix}"] = len(messages)
            r[f"worker_backlog_accepted{prefix}"] = worker["accepted"]
            r[f"worker_backlog_rejected{prefix}"] = worker["rejected"]
            r[f"worker_backlog_alerts{prefix}"] = worker["alerts"]
            r[f"worker_startup_to_first_commit_s{prefix}"] = round(
                worker["startup_to_first_commit_s"], 1
            )
            rss = round(worker["rss_mb_peak"], 1)
            r[f"worker_rss_mb_peak_{_label(len(messages))}"] = rss
            if largest:
                r["worker_rss_mb_peak"] = rss
                r["worker_rss_mb_peak_half"] = round(worker["rss_mb_peak_half"], 1)
            if not largest:
                del loaded.pop.persons[:]  # free the smaller population before the next
            last = loaded
        assert last is not None

        note("steady-rate latency: worker + API")
        r |= await _e2e(servers, last, sizes, seed, now, log_dir)
        r |= await _api(servers, last, sizes, seed, note)
        note("pure rule evaluator, one core")
        ev = await asyncio.to_thread(
            evaluator_bench.run,
            Generator(last.pop, seed + 30, now, prefix="eval"),
            cases=sizes.evaluator_cases,
            seconds=sizes.evaluator_seconds,
        )
        print(f"  evaluator: {ev}", flush=True)
        r["rule_evaluations_per_s"] = round(ev["evaluations_per_s"])
        r["rule_evaluator_rules"] = ev["rules"]
        r["rule_evaluator_mean_history_events"] = round(ev["mean_history_events"], 2)
        note("done")
    return r | note.conditions()


async def _identity(loaded: harness.Loaded, seed: int, sizes: Sizes) -> dict[str, Any]:
    from lookout.db import create_engine, session_factory

    engine = create_engine(loaded.url, pool_size=2)
    try:
        sessions = session_factory(engine)
        out = await identity_bench.snapshot_latency(
            sessions, loaded.pop, seed, sizes.snapshot_samples
        )
        out |= await identity_bench.strong_links(
            sessions, loaded.pop, seed, batches=sizes.link_batches
        )
    finally:
        await engine.dispose()
    return out


async def _e2e(
    servers: harness.Servers,
    loaded: harness.Loaded,
    sizes: Sizes,
    seed: int,
    now: datetime,
    log_dir: Path,
    workers: int = 1,
) -> dict[str, Any]:
    r: dict[str, Any] = {"e2e_workers": workers}
    api, base = await harness.start_api(servers, loaded.url, token_secret=f"bench-{seed}-e2e")
    try:
        tokens = {
            org: await harness.access_token(loaded.url, base, org)
            for org in loaded.children_services
        }
        for n, (rate, seconds) in enumerate(sizes.e2e):
            gen = Generator(loaded.pop, seed + 20 + n, now_utc(), prefix=f"e2e{rate}")
            out = await pipeline_bench.steady_rate(
                servers,
                loaded.url,
                gen,
                topic=f"bench.e2e.{rate}",
                rate=rate,
                seconds=seconds,
                base=base,
                tokens=tokens,
                log_dir=log_dir,
                drain_s=sizes.e2e_drain_s,
                watch={"api": api.pid, **servers.pids},
                workers=workers,
            )
            print(f"  e2e at {rate}/s: {out}", flush=True)
            prefix = "e2e" if n == 0 else f"e2e_{rate}"
            r[f"{prefix}_rate_events_per_s"] = round(out["rate_achieved"])
            r[f"{prefix}_seconds"] = seconds
            r[f"{prefix}_latency_p50_ms"] = round(out["latency_p50_ms"], 1)
            r[f"{prefix}_latency_p99_ms"] = round(out["latency_p99_ms"], 1)
            r[f"{prefix}_latency_max_ms"] = round(out["latency_max_ms"], 1)
            r[f"{prefix}_drained"] = int(out["drained"])
            r[f"{prefix}_events_measured"] = out["latency_events"]
            r[f"{prefix}_events_with_alert"] = out["events_with_alert"]
            r[f"{prefix}_alerts_seen"] = out["alerts_seen"]
            r[f"{prefix}_alerts_raised_later"] = out["alerts_raised_later"]
            r[f"{prefix}_events_not_committed"] = out["not_committed"]
            r[f"{prefix}_host_busy_pct"] = round(out["host_busy_pct"], 1)
            r |= {
                f"{prefix}_cpu_ms_per_event_{role}": round(ms, 3)
                for role, ms in out["cpu_ms_per_event"].items()
            }
    finally:
        api.stop()
    return r


async def bench_api_only(
    sizes: Sizes, seed: int, log_dir: Path, profile: Path | None, api_workers: int | None
) -> dict[str, Any]:
    """The API section alone, at the sizes' alert count, load and duration: for working on
    the API. Its database holds the smallest population (the list reads only the alerts
    table) and a short backlog run through one worker (alerts need events to point at)."""
    r: dict[str, Any] = {}
    note = _Progress()

    with harness.servers() as servers:
        now = now_utc()
        persons = sizes.populations[0]
        note(f"population of {persons:,}: generate and COPY load")
        loaded = await harness.population_database(servers, "bench_api", persons, seed, now.date())
        messages = list(events(Generator(loaded.pop, seed + 10, now, prefix="api"), 2_000))
        note(f"a backlog of {len(messages):,} events through one worker")
        await pipeline_bench.publish(servers.bootstrap, "bench.api", messages)
        await pipeline_bench.worker_backlog(
            servers, loaded.url, "bench.api", len(messages), log_dir=log_dir
        )
        r |= await _api(
            servers,
            loaded,
            sizes,
            seed,
            note,
            profile=profile,
            api_settings={} if api_workers is None else {"api_workers": api_workers},
        )
        note("done")
    return r | note.conditions()


async def bench_e2e_only(
    sizes: Sizes, seed: int, log_dir: Path, workers: int = 1
) -> dict[str, Any]:
    """The steady-rate latency runs alone, at the sizes' rates and durations, over the
    smallest population (100,000 persons; 10,000 with ``--quick``): for working on
    latency without the hour's other sections. The full run's figures are over the
    largest population, after its backlog run."""
    note = _Progress()
    with harness.servers() as servers:
        now = now_utc()
        persons = sizes.populations[0]
        note(f"population of {persons:,}: generate and COPY load")
        loaded = await harness.population_database(servers, "bench_e2e", persons, seed, now.date())
        note("steady-rate latency: worker + API")
        r = await _e2e(servers, loaded, sizes, seed, now, log_dir, workers)
        note("done")
    return r | note.conditions()


# Output ---------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, int | float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:,.2f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    return str(value)


def table(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for key, what, target, check in TARGETS:
        if key not in results:
            continue
        value = results[key]
        if value is None:
            rows.append((key, what, "n/a", target, ""))
            continue
        status = "" if check is None else ("met" if check(value) else "**missed**")
        shown = _fmt(value)
        run = key.split("_latency_")[0] if "_latency_" in key else None
        if run and results.get(f"{run}_drained") == 0:
            shown = f">= {shown} (not drained)"
        rows.append((key, what, shown, target, status))
    return rows


def print_table(results: dict[str, Any]) -> None:
    rows = [("key", "what", "result", "target", ""), *table(results)]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for n, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = 0
    return (
        f"{platform.machine()}, {model or 'CPU'}, {os.cpu_count()} CPUs, "
        f"{mem_kb / 1024 / 1024:.0f} GiB RAM, Python {platform.python_version()}"
    )


def markdown(
    results: dict[str, Any], quick: bool, started: datetime, elapsed: float, commit: str
) -> str:
    name = "quick run (`make bench-quick`)" if quick else "full run (`make bench`)"
    lines = [
        f"Generated by `python -m benchmarks.run{' --quick' if quick else ''}` — {name}.",
        "",
        f"- **Machine:** {_machine()}; embedded PostgreSQL (durable) and the bundled Tansu "
        "broker on the same host.",
        f"- **Date:** {started:%Y-%m-%d %H:%M} UTC, {elapsed / 60:.1f} min. "
        f"**Commit:** `{commit}`.",
        f"- **Conditions:** load average (1 min) between {results['bench_load_average_min']} "
        f"and {results['bench_load_average_max']} on {results['bench_cpus']} CPUs during the "
        "run (other sessions' tests share this host: a load above the CPU count means "
        "waiting for a CPU).",
        f"- **Rerun:** `make bench{'-quick' if quick else ''}`; results in "
        f"`benchmarks/{'results-quick' if quick else 'results'}.json`.",
        "",
        "| key | what | result | target | |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [f"| `{k}` | {w} | {v} | {t} | {s} |" for k, w, v, t, s in table(results)]
    return "\n".join(lines) + "\n"


def write_markdown(text: str, quick: bool) -> None:
    marker = "quick" if quick else "full"
    start, end = f"<!-- bench:{marker}:start -->", f"<!-- bench:{marker}:end -->"
    current = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    block = f"{start}\n{text}{end}"
    if start in current and end in current:
        before, rest = current.split(start, 1)
        after = rest.split(end, 1)[1]
        current = before + block + after
    else:
        current = current.rstrip("\n") + "\n\n" + block + "\n"
    BENCHMARKS_MD.write_text(current)


def merge_results(path: Path, results: dict[str, Any]) -> None:
    """Read, update, write: other benchmarks keep their keys. One flat object of numbers."""
    existing = orjson.loads(path.read_bytes()) if path.exists() else {}
    # Older identity-bench keys that were not numbers (now flattened or in BENCHMARKS.md).
    existing.pop("machine", None)
    existing.pop("population_rows", None)
    existing.update({k: v for k, v in results.items() if isinstance(v, int | float)})
    path.write_bytes(
        orjson.dumps(existing, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under 2 minutes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy the worker during each backlog run (raw stacks to PROFILE.<size>.txt); "
        "with --only api, the API during the load (to PROFILE)",
    )
    parser.add_argument(
        "--only",
        choices=["api", "e2e"],
        help="run one section alone at the chosen sizes and print it (writes nothing)",
    )
    parser.add_argument(
        "--api-workers",
        type=int,
        help="with --only api: LOOKOUT_API_WORKERS for the API (default: the setting's)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="with --only e2e: worker processes in the steady-rate runs (the full run: one)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    log_dir = ROOT / ".lookout" / "bench-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    if args.only == "e2e":
        results = asyncio.run(bench_e2e_only(sizes, args.seed, log_dir, args.workers))
        print()
        print_table(results)
        return
    if args.only == "api":
        results = asyncio.run(
            bench_api_only(sizes, args.seed, log_dir, args.profile, args.api_workers)
        )
        print()
        print_table(results)
        for key in ("api_cpu_ms_per_request", "api_client_cpu_ms_per_request"):
            print(f"{key}: {results[key]}")
        print(
            f"load average {results['bench_load_average_min']}-"
            f"{results['bench_load_average_max']} on {results['bench_cpus']} CPUs"
        )
        return
    started = datetime.now(UTC)
    commit = _commit()  # the code measured, whatever is committed while it runs
    t0 = time.perf_counter()
    results = asyncio.run(bench(sizes, args.seed, log_dir, args.profile))
    elapsed = time.perf_counter() - t0
    results["bench_seconds"] = round(elapsed)
    results = {
        k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in results.items()
    }
    print()
    print_table(results)
    if args.no_write:
        return
    merge_results(QUICK_RESULTS if args.quick else RESULTS, results)
    write_markdown(markdown(results, args.quick, started, elapsed, commit), args.quick)
    print(f"\nwrote {QUICK_RESULTS if args.quick else RESULTS} and {BENCHMARKS_MD}")


if __name__ == "__main__":
    main()
