"""A small HTTP load client, run as its own process: ``GET /v1/alerts`` (a page of 50)
from ``--concurrency`` keep-alive HTTP/1.1 connections for ``--seconds``, each request
authenticated and naming its end user and purpose as a subscriber's system does. Pages
alternate between the newest page and following a cursor a few pages deep, as people
scroll. Prints ``measuring`` when its warm-up is over, then one JSON object: requests,
errors, rps, p50/p90/p99 latency in milliseconds, and the client's own CPU per request.
The HTTP client is a minimal one of its own (see ``Connection``).

    python -m benchmarks.api_load --url http://127.0.0.1:8000 --token T [--token T2 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from urllib.parse import quote, urlsplit

import orjson
import uvloop

from benchmarks.harness import API_HEADERS
from benchmarks.pipeline_bench import percentile


class Connection:
    """One keep-alive HTTP/1.1 connection, written by hand: this process shares the host's
    CPUs with the API it measures, and a general client (httpx: ~3.5 ms of CPU per request
    here) took CPU from the API. Requests are plain GETs; responses must carry a
    Content-Length (the API's do)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        lines = [f"GET {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        length, close = None, False
        for line in header_lines:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        if length is None:
            raise RuntimeError(f"a response without Content-Length: {status_line}")
        body = await self.reader.readexactly(length)
        if close:
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()
        self.reader = self.writer = None


async def _client(
    url: str,
    tokens: itertools.cycle[str],
    deadline: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    http = Connection(url)
    cursor: str | None = None
    depth = 0
    try:
        while time.perf_counter() < deadline:
            target = "/v1/alerts?limit=50"
            if cursor and depth < 4:
                target += "&cursor=" + quote(cursor, safe="")
            else:
                cursor, depth = None, 0
            headers = {"Authorization": f"Bearer {next(tokens)}", **API_HEADERS}
            started = time.perf_counter()
            status, body = await http.get(target, headers)
            latencies.append((time.perf_counter() - started) * 1000)
            if status != 200:
                errors.append(status)
                cursor = None
                continue
            cursor = orjson.loads(body).get("next_cursor")
            depth += 1
    finally:
        await http.close()


async def main(url: str, tokens: list[str], concurrency: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors: list[int] = []
    # Warm up: connections, the API's statement cache.
    await asyncio.gather(
        *(_client(url, itertools.cycle(tokens), time.perf_counter() + 2, [], []) for _ in
          range(concurrency))
    )  # fmt: skip
    print("measuring", flush=True)
    cpu_started = time.process_time()
    started = time.perf_counter()
    deadline = started + seconds
    cycle = itertools.cycle(tokens)
    await asyncio.gather(
        *(_client(url, cycle, deadline, latencies, errors) for _ in range(concurrency))
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
    args = parser.parse_args()
    result = uvloop.run(main(args.url, args.token, args.concurrency, args.seconds))
    print(orjson.dumps(result).decode())
