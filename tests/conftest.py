"""Test infrastructure: one real PostgreSQL and one real Kafka-protocol broker per test run.

Set ``LOOKOUT_TEST_DATABASE_URL`` / ``LOOKOUT_TEST_KAFKA_BOOTSTRAP_SERVERS`` to use your
own; otherwise the embedded ones are started. Each test that needs the database gets a
fresh database cloned from a migrated template, and its own topic names.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from tests.factories import serve

from lookout.db import create_engine, session_factory
from lookout.embedded.broker import EmbeddedBroker
from lookout.embedded.postgres import EmbeddedPostgres
from lookout.migrations import upgrade
from lookout.settings import Settings
from lookout.worker import Worker

TEMPLATE = "lookout_template"


@dataclass(frozen=True)
class Infra:
    server_url: str  # libpq URL of the maintenance database
    bootstrap: str

    def url_for(self, database: str) -> str:
        base, _, _ = self.server_url.rpartition("/")
        return f"{base}/{database}"


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    stack = contextlib.ExitStack()
    workdir = Path(tempfile.mkdtemp(prefix="lookout-test-"))
    workdir.chmod(0o755)  # the embedded server runs as its own user when we are root
    stack.callback(shutil.rmtree, workdir, ignore_errors=True)
    with stack:
        database_url = os.environ.get("LOOKOUT_TEST_DATABASE_URL")
        if not database_url:
            pg = stack.enter_context(EmbeddedPostgres.start(workdir / "pg", durable=False))
            database_url = pg.url
        bootstrap = os.environ.get("LOOKOUT_TEST_KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            broker = stack.enter_context(
                EmbeddedBroker.start(workdir / "broker.log", die_with_parent=True)
            )
            bootstrap = broker.bootstrap_servers
        infra = Infra(database_url, bootstrap)

        async def make_template() -> None:
            conn = await asyncpg.connect(database_url)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
                await conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
            finally:
                await conn.close()

        asyncio.run(make_template())
        upgrade(infra.url_for(TEMPLATE))
        yield infra


@pytest.fixture
async def database_url(infra: Infra) -> AsyncIterator[str]:
    """A fresh, migrated database for this test (cloned from the template)."""
    name = f"t_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(infra.server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    finally:
        await conn.close()
    yield infra.url_for(name)
    conn = await asyncpg.connect(infra.server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def settings(infra: Infra, database_url: str) -> Settings:
    run = secrets.token_hex(4)
    return Settings(
        database_url=database_url,
        kafka_bootstrap_servers=infra.bootstrap,
        events_topic=f"test-{run}.events",
        dlq_topic=f"test-{run}.events.dlq",
        events_partitions=4,
        consumer_group=f"test-{run}-worker",
        kafka_session_timeout_ms=2_000,
        kafka_heartbeat_interval_ms=500,
        token_secret=secrets.token_urlsafe(32),
        worker_metrics_port=0,
        dispatcher_metrics_port=0,
        webhook_allow_private=True,  # test receivers listen on 127.0.0.1
        webhook_retry_schedule_s=[0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0],
        dispatcher_poll_interval_s=0.1,
        stream_poll_interval_s=0.1,
        log_json=False,
    )


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.database_url, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


class RunningWorker:
    """A worker running in this process, as ``lookout worker`` runs it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker: Worker | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> Worker:
        self.worker = Worker(self.settings)
        self.task = asyncio.create_task(self.worker.run())
        return self.worker

    async def stop(self) -> None:
        if self.worker and self.task:
            self.worker.stopping.set()
            await asyncio.wait_for(self.task, timeout=30)
            self.worker = self.task = None


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[RunningWorker]:
    running = RunningWorker(settings)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def api_url(settings: Settings) -> AsyncIterator[str]:
    """The real HTTP API served by uvicorn on a free port."""
    from lookout.api.app import create_app

    async with serve(create_app(settings)) as url:
        yield url
