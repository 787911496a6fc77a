"""The embedded stack: PostgreSQL, the Tansu broker, the Kafka helpers and ``run_stack``."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from lookout.embedded.broker import EmbeddedBroker
from lookout.embedded.postgres import RANDOM_PAGE_COST, EmbeddedPostgres, EmbeddedPostgresError
from lookout.embedded.stack import run_stack
from lookout.kafka import cluster_id, consumer_config, ensure_topics, producer_config
from lookout.settings import Settings

# Records its pid as <dir>/<role>-<pid>, then sleeps: a stand-in for the API and workers.
DUMMY_CHILD = (
    "import os, sys, time; "
    "open(os.path.join(sys.argv[1], sys.argv[2] + '-' + str(os.getpid())), 'w').close(); "
    "time.sleep(1000)"
)


def _dummy(pids_dir: Path, role: str) -> list[str]:
    return [sys.executable, "-c", DUMMY_CHILD, str(pids_dir), role]


def _wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return fields[0] not in ("Z", "X")


def _pids_with_cmdline(fragment: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if fragment in cmdline and _alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def _roles(pids_dir: Path) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for path in pids_dir.iterdir():
        role, _, pid = path.name.rpartition("-")
        found.setdefault(role, []).append(int(pid))
    return found


@pytest.fixture(scope="module")
def base_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: /tmp/pytest-of-root is 0700, and as root PostgreSQL runs as
    # lookout-pg, which must be able to enter every parent folder of its data folder.
    path = Path(tempfile.mkdtemp(prefix="lookout-embedded-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def embedded_pg(base_dir: Path) -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres.start(base_dir / "pg", durable=False) as pg:
        yield pg


@pytest.fixture(scope="module")
def embedded_broker(base_dir: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker.start(base_dir / "broker.log") as broker:
        yield broker


# -- PostgreSQL ------------------------------------------------------------------------


async def test_postgres_connects_and_clones_from_template(embedded_pg: EmbeddedPostgres) -> None:
    assert embedded_pg.url == f"postgresql://postgres@127.0.0.1:{embedded_pg.port}/postgres"
    conn = await asyncpg.connect(embedded_pg.url)
    try:
        assert await conn.fetchval("SHOW fsync") == "off"
        assert await conn.fetchval("SHOW max_connections") == "200"
        assert await conn.fetchval("SHOW server_encoding") == "UTF8"
        # Lookout's planner cost and cache (docs/operations.md, "PostgreSQL settings").
        assert await conn.fetchval("SHOW random_page_cost") == RANDOM_PAGE_COST
        quarter_mb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4 >> 20
        shared_mb = await conn.fetchval(
            "SELECT setting::bigint * 8 / 1024 FROM pg_settings WHERE name = 'shared_buffers'"
        )
        assert shared_mb == min(max(quarter_mb, 128), 8192)
    finally:
        await conn.close()

    await embedded_pg.create_database("tmpl_embedded")
    conn = await asyncpg.connect(embedded_pg.url_for("tmpl_embedded"))
    try:
        await conn.execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('from template')")
    finally:
        await conn.close()

    await embedded_pg.create_database("clone_embedded", template="tmpl_embedded")
    conn = await asyncpg.connect(embedded_pg.url_for("clone_embedded"))
    try:
        assert await conn.fetchval("SELECT v FROM t") == "from template"
    finally:
        await conn.close()
    assert await embedded_pg.ensure_database("clone_embedded") is False

    await embedded_pg.drop_database("clone_embedded")
    await embedded_pg.drop_database("tmpl_embedded")
    await embedded_pg.drop_database("never_existed")
    assert not await embedded_pg.database_exists("clone_embedded")


def test_postgres_restarts_over_a_stale_pid_file(base_dir: Path) -> None:
    data_dir = base_dir / "pg-stale"
    with EmbeddedPostgres.start(data_dir, durable=False) as pg:
        first_port = pg.port
    dead = subprocess.Popen(["true"])
    dead.wait()
    pid_file = data_dir / "postmaster.pid"
    pid_file.write_text(f"{dead.pid}\n{data_dir}\n")
    with EmbeddedPostgres.start(data_dir, durable=False) as pg:
        assert (data_dir / "PG_VERSION").exists()
        assert pg.port > 0
        with pytest.raises(EmbeddedPostgresError, match="already running"):
            EmbeddedPostgres.start(data_dir, durable=False)
    assert first_port > 0
    assert not pid_file.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the traversal check applies when run as root")
def test_postgres_explains_an_untraversable_parent(base_dir: Path) -> None:
    private = base_dir / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    with pytest.raises(EmbeddedPostgresError, match=f"cannot enter {private}") as info:
        EmbeddedPostgres.start(private / "pg", durable=False)
    assert "chmod o+x" in str(info.value)
    assert not (private / "pg").exists()
    assert stat.S_IMODE(private.stat().st_mode) == 0o700


# -- broker and Kafka helpers ----------------------------------------------------------


async def test_broker_topics_produce_and_consume(embedded_broker: EmbeddedBroker) -> None:
    bootstrap = embedded_broker.bootstrap_servers
    assert bootstrap == f"127.0.0.1:{embedded_broker.port}"
    topics = {"embedded.events": 3, "embedded.dlq": 3}
    await ensure_topics(bootstrap, topics)
    await ensure_topics(bootstrap, topics)  # already there: no error

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    assert {t["topic"]: len(t["partitions"]) for t in described} == topics

    producer = AIOKafkaProducer(**producer_config(bootstrap))
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            "embedded.events",
            value=b'{"hello": "world"}',
            key=b"subject-1",
            headers=[("type", b"uk.lookout.test.v1"), ("trace", b"abc")],
        )
    finally:
        await producer.stop()

    config = consumer_config(
        bootstrap,
        "embedded-test",
        session_timeout_ms=2_000,
        heartbeat_interval_ms=500,
        fetch_max_wait_ms=50,
        max_poll_records=10,
    )
    # The worker seeks every partition itself ("none"); this plain consumer starts at the start.
    consumer = AIOKafkaConsumer("embedded.events", **{**config, "auto_offset_reset": "earliest"})
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), timeout=15)
    finally:
        await consumer.stop()
    assert message.partition == sent.partition
    assert message.key == b"subject-1"
    assert message.value == b'{"hello": "world"}'
    assert list(message.headers) == [("type", b"uk.lookout.test.v1"), ("trace", b"abc")]


async def test_cluster_id_is_fresh_per_broker_start(
    embedded_broker: EmbeddedBroker, base_dir: Path
) -> None:
    first = await cluster_id(embedded_broker.bootstrap_servers)
    assert first
    assert first == embedded_broker.cluster_id
    with EmbeddedBroker.start(base_dir / "broker-2.log") as other:
        second = await cluster_id(other.bootstrap_servers)
        pid = other.pid
    assert second
    assert second != first
    assert not _alive(pid)


# -- run_stack ---------------------------------------------------------------------------


def test_run_stack_with_configured_services(
    embedded_pg: EmbeddedPostgres, embedded_broker: EmbeddedBroker, base_dir: Path
) -> None:
    state_dir = base_dir / "state-configured"
    pids_dir = base_dir / "pids-configured"
    pids_dir.mkdir()
    database_url = embedded_pg.url
    settings = Settings(
        database_url=database_url,
        kafka_bootstrap_servers=embedded_broker.bootstrap_servers,
        state_dir=state_dir,
        events_topic="configured.events",
        dlq_topic="configured.dlq",
        events_partitions=2,
        api_host="0.0.0.0",
        api_port=18123,
    )
    migrated: list[str] = []
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(
            run_stack(
                settings,
                workers=1,
                migrate=migrated.append,
                api_command=_dummy(pids_dir, "api"),
                worker_command=_dummy(pids_dir, "worker"),
                sealer_command=_dummy(pids_dir, "sealer"),
                dispatcher_command=_dummy(pids_dir, "dispatcher"),
                stop_event=stop,
            )
        )
    )
    thread.start()
    dev_env = state_dir / "dev.env"
    try:
        _wait_for(lambda: len(list(pids_dir.iterdir())) == 4, 20, "the children")
        assert set(_roles(pids_dir)) == {"api", "worker", "sealer", "dispatcher"}
        lines = dev_env.read_text().splitlines()
        assert lines[:3] == [
            f"LOOKOUT_DATABASE_URL={database_url}",
            f"LOOKOUT_KAFKA_BOOTSTRAP_SERVERS={embedded_broker.bootstrap_servers}",
            "LOOKOUT_API_URL=http://127.0.0.1:18123",
        ]
        secret = (state_dir / "token_secret").read_text().strip()
        assert lines[3] == f"LOOKOUT_TOKEN_SECRET={secret}"
        assert len(lines) == 4
        assert stat.S_IMODE(dev_env.stat().st_mode) == 0o600
        assert migrated == [database_url]
    finally:
        stop.set()
        thread.join(30)
    assert result == [0]
    assert not dev_env.exists()
    children = [pid for pids in _roles(pids_dir).values() for pid in pids]
    assert not any(_alive(pid) for pid in children)
    # Configured services are not ours to stop.
    assert embedded_broker.running()

    async def topics() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=embedded_broker.bootstrap_servers)
        await admin.start()
        try:
            return list(await admin.list_topics())
        finally:
            await admin.close()

    assert {"configured.events", "configured.dlq"} <= set(asyncio.run(topics()))


RUN_STACK_SCRIPT = """
import json, sys
from pathlib import Path
from lookout.embedded.stack import run_stack
from lookout.settings import Settings

cfg = json.loads(sys.argv[1])
settings = Settings(
    state_dir=Path(cfg["state_dir"]), database_url="", kafka_bootstrap_servers="",
    events_partitions=2, api_port=18124,
)
sys.exit(run_stack(
    settings, workers=2, migrate=None, durable=False,
    api_command=cfg["api"], worker_command=cfg["worker"], sealer_command=None,
    dispatcher_command=cfg["dispatcher"],
))
"""


def test_run_stack_embedded_restarts_children_and_stops_on_sigterm(base_dir: Path) -> None:
    state_dir = base_dir / "state-embedded"
    pids_dir = base_dir / "pids-embedded"
    pids_dir.mkdir()
    cfg = {
        "state_dir": str(state_dir),
        "api": _dummy(pids_dir, "api"),
        "worker": _dummy(pids_dir, "worker"),
        "dispatcher": _dummy(pids_dir, "dispatcher"),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_")}
    output = (base_dir / "run_stack.out").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_STACK_SCRIPT, json.dumps(cfg)],
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    dev_env = state_dir / "dev.env"
    try:
        _wait_for(
            lambda: len(list(pids_dir.iterdir())) == 4 or proc.poll() is not None,
            40,
            "the stack",
        )
        assert proc.poll() is None, (base_dir / "run_stack.out").read_text()
        values = dict(line.split("=", 1) for line in dev_env.read_text().splitlines())
        database_url = values["LOOKOUT_DATABASE_URL"]
        bootstrap = values["LOOKOUT_KAFKA_BOOTSTRAP_SERVERS"]
        assert database_url.startswith("postgresql://postgres@127.0.0.1:")
        assert database_url.endswith("/lookout")
        assert bootstrap.startswith("127.0.0.1:")
        assert values["LOOKOUT_API_URL"] == "http://127.0.0.1:18124"
        assert values["LOOKOUT_TOKEN_SECRET"]

        async def check_services() -> tuple[str, str]:
            conn = await asyncpg.connect(database_url)
            try:
                name = str(await conn.fetchval("SELECT current_database()"))
            finally:
                await conn.close()
            return name, await cluster_id(bootstrap)

        database, cluster = asyncio.run(check_services())
        assert database == "lookout"
        assert cluster

        postmaster = int((state_dir / "pg" / "postmaster.pid").read_text().split()[0])
        brokers = _pids_with_cmdline(f"--listener-url tcp://{bootstrap}")
        assert len(brokers) == 1
        assert _alive(postmaster)

        roles = _roles(pids_dir)
        assert len(roles["api"]) == 1
        assert len(roles["worker"]) == 2
        assert len(roles["dispatcher"]) == 1
        victim = roles["worker"][0]
        os.kill(victim, signal.SIGKILL)
        _wait_for(lambda: len(_roles(pids_dir)["worker"]) == 3, 10, "a restarted worker")
        children = [pid for pids in _roles(pids_dir).values() for pid in pids]
        assert sum(_alive(pid) for pid in children) == 4

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        output.close()
    assert not dev_env.exists()
    assert not _alive(postmaster)
    assert not any(_alive(pid) for pid in brokers)
    assert not any(_alive(pid) for pid in children)
    assert _pids_with_cmdline(str(state_dir)) == []
    assert _pids_with_cmdline(f"tcp://{bootstrap}") == []
