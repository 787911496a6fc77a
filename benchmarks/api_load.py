"""A small HTTP load client, run as its own process: ``GET /v1/alerts`` (a page of 50)
from ``--concurrency`` keep-alive HTTP/1.1 connections for ``--seconds``, each request
authenticated and naming its end user and purpose as a subscriber's system does. Pages
alternate between the newest page and following a cursor a few pages deep, as people
scroll. Prints ``measuring`` when its warm-up is over, then one JSON object: requests,
errors, rps, p50/p90/p99 latency in milliseconds, and the client's own CPU per request.
With ``--team`` names and ``--team-seconds``, a second phase follows (after a line
``team queues``): every connection reads a team's queue (``&team=``, newest first and a
few pages down, a random one of the teams each walk), as a social worker opens their
team's alerts; its figures are the ``team_`` keys of the same JSON object. The first
phase, and the keys without a prefix, stay the unfiltered list.
The client is aiohttp (its C HTTP parser): this process shares the host's CPUs with the
API it measures, and a heavier client (httpx: ~3.5 ms of CPU per request here) takes CPU
from the API.

    python -m benchmarks.api_load --url http://127.0.0.1:8000 --token T [--token T2 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import time
from collections.abc import Sequence
from urllib.parse import quote

import aiohttp
import orjson
import uvloop

from benchmarks.harness import API_HEADERS
from benchmarks.pipeline_bench import percentile


async def _client(
    http: aiohttp.ClientSession,
    tokens: itertools.cycle[str],
    deadline: float,
    latencies: list[float],
    errors: list[int],
    teams: Sequence[str] = (),
) -> None:
    cursor: str | None = None
    depth = 0
    rng = random.Random()  # noqa: S311 - a load pattern
    target = "/v1/alerts?limit=50"
    while time.perf_counter() < deadline:
        if cursor and depth < 4:
            target += "&cursor=" + quote(cursor, safe="")
        else:
            cursor, depth = None, 0
            target = "/v1/alerts?limit=50"
            if teams:
                target += "&team=" + quote(rng.choice(teams), safe="")
        headers = {"Authorization": f"Bearer {next(tokens)}", **API_HEADERS}
        started = time.perf_counter()
        async with http.get(target, headers=headers) as response:
            body = await response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            errors.append(response.status)
            cursor = None
            continue
        cursor = orjson.loads(body).get("next_cursor")
        depth += 1
        target = target.partition("&cursor=")[0]


def session(url: str, concurrency: int) -> aiohttp.ClientSession:
    """Keep-alive connections, at most one per concurrent client."""
    return aiohttp.ClientSession(
        base_url=url,
        connector=aiohttp.TCPConnector(limit=concurrency),
        skip_auto_headers=("User-Agent",),
    )


async def main(
    url: str,
    tokens: list[str],
    concurrency: int,
    seconds: float,
    teams: Sequence[str] = (),
    team_seconds: float = 0.0,
) -> dict[str, float]:
    async with session(url, concurrency) as http:
        # Warm up: connections, the API's statement cache.
        await asyncio.gather(
            *(_client(http, itertools.cycle(tokens), time.perf_counter() + 2, [], [], teams)
              for _ in range(concurrency))
        )  # fmt: skip
        print("measuring", flush=True)
        result = await _measure(http, tokens, concurrency, seconds)
        if teams and team_seconds > 0:
            print("team queues", flush=True)
            team = await _measure(http, tokens, concurrency, team_seconds, teams)
            result |= {f"team_{k}": v for k, v in team.items() if k != "concurrency"}
        return result


async def _measure(
    http: aiohttp.ClientSession,
    tokens: list[str],
    concurrency: int,
    seconds: float,
    teams: Sequence[str] = (),
) -> dict[str, float]:
    latencies: list[float] = []
    errors: list[int] = []
    cpu_started = time.process_time()
    started = time.perf_counter()
    deadline = started + seconds
    cycle = itertools.cycle(tokens)
    await asyncio.gather(
        *(_client(http, cycle, deadline, latencies, errors, teams) for _ in range(concurrency))
    )
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5),
        "p90_ms": percentile(latencies, 0.9),
        "p99_ms": percentile(latencies, 0.99),
        "concurrency": concurrency,
        # This client shares the host's CPUs with the API and PostgreSQL.
        "client_cpu_ms_per_request": cpu * 1000 / len(latencies) if latencies else 0.0,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", action="append", required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--team", action="append", default=[], help="a team queue to read")
    parser.add_argument("--team-seconds", type=float, default=0.0)
    args = parser.parse_args()
    result = uvloop.run(
        main(args.url, args.token, args.concurrency, args.seconds, args.team, args.team_seconds)
    )
    print(orjson.dumps(result).decode())
