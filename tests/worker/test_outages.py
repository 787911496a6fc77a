"""Retriable errors back off and retry: a worker started while PostgreSQL is unreachable
waits for it (it does not exit), then consumes from the stored offsets as usual.

PostgreSQL is made unreachable for real: the worker's database URL points at a port where
nothing listens until the test opens a TCP relay to the real server on it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.conftest import RunningWorker
from tests.e2e.test_publish_to_alert import caught_up, count, publish, wait_for
from tests.factories import moved_in, person, register_orgs, years_before

from lookout import metrics
from lookout.embedded.postgres import free_port
from lookout.ingest.models import Event
from lookout.settings import Settings

pytestmark = pytest.mark.asyncio


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


def behind_port(settings: Settings, **update: Any) -> tuple[Settings, int, str, int]:
    """``settings`` with the database reached on a free local port where nothing listens
    until a :func:`relay` opens it; also that port and the real server's host and port."""
    real = urlsplit(settings.database_url)
    assert real.hostname is not None
    assert real.port is not None
    port = free_port()
    url = urlunsplit(real._replace(netloc=f"{real.username}@127.0.0.1:{port}"))
    return (
        settings.model_copy(update={"database_url": url, **update}),
        port,
        real.hostname,
        real.port,
    )


@contextlib.asynccontextmanager
async def relay(listen_port: int, host: str, port: int) -> AsyncIterator[None]:
    """Forward TCP connections on ``listen_port`` to ``host:port`` while open."""

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(host, port)
        await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    try:
        yield
    finally:
        server.close()


async def test_a_worker_started_during_a_database_outage_waits_for_it(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await register_orgs(sessions)
    down, port, host, real_port = behind_port(settings, retry_backoff_max_s=0.5)
    running = RunningWorker(down)
    await running.start()
    assert running.task is not None
    await asyncio.sleep(3)  # several failed attempts to reach the database
    assert not running.task.done(), "the worker exited during the outage"

    event = moved_in(person(), years_before(datetime.now(UTC), 1))
    await publish(settings, [event])
    async with relay(port, host, real_port):
        await wait_for(lambda: caught_up(sessions, settings, 1), within_s=60)
        assert await count(sessions, Event, Event.event_id == event["id"]) == 1
        await running.stop()


async def test_sigterm_while_waiting_for_the_database_exits_cleanly(settings: Settings) -> None:
    """A worker still starting (here: no database yet) stops on SIGTERM, exit code 0."""
    down, _, _, _ = behind_port(settings)
    env = {
        **os.environ,
        "LOOKOUT_DATABASE_URL": down.database_url,
        "LOOKOUT_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "LOOKOUT_EVENTS_TOPIC": settings.events_topic,
        "LOOKOUT_DLQ_TOPIC": settings.dlq_topic,
        "LOOKOUT_CONSUMER_GROUP": settings.consumer_group,
        "LOOKOUT_WORKER_METRICS_PORT": str(free_port()),
    }
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lookout",
        "worker",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert worker.stderr is not None
    seen = b""
    async with asyncio.timeout(60):  # it is retrying: the database is unreachable
        while b"retrying" not in (line := await worker.stderr.readline()):
            assert line, f"the worker exited: {seen[-2000:]!r}"
            seen += line
    worker.send_signal(signal.SIGTERM)
    _, _ = await asyncio.wait_for(worker.communicate(), timeout=30)
    assert worker.returncode == 0


async def test_sigterm_while_a_batch_waits_for_the_database_stops_the_worker(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A running worker whose batch is retrying (the database went away) stops on request
    at once, committing nothing; before, it retried until the database came back."""
    await register_orgs(sessions)
    via_relay, port, host, real_port = behind_port(settings, retry_backoff_max_s=60.0)
    running = RunningWorker(via_relay)
    on = years_before(datetime.now(UTC), 1)
    async with relay(port, host, real_port):
        await running.start()
        await publish(settings, [moved_in(person(), on)])
        await wait_for(lambda: caught_up(sessions, settings, 1), within_s=60)
    await _end_other_connections(sessions)  # the relay no longer accepts new ones
    retries = _batch_retries()
    await publish(settings, [moved_in(person(), on)])
    await wait_for(lambda: _true(_batch_retries() > retries), within_s=30)

    await running.stop()  # within 30 s, or it raises

    assert await caught_up(sessions, settings, 1)  # the second event was not committed
    assert await count(sessions, Event) == 1


async def _end_other_connections(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        await session.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )


async def test_partitions_assigned_during_a_database_outage_keep_their_worker_in_the_group(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """aiokafka sends no heartbeats while the rebalance listener runs. A worker that sought
    its new partitions there, retrying through a database outage, was expelled from the
    group once the session timeout passed, and the rebalance started over. Now it pauses
    them and seeks them from its main loop: it stays in the group, keeps its share, and
    reads it once the database is back."""
    await register_orgs(sessions)
    via_relay, port, host, real_port = behind_port(settings, retry_backoff_max_s=0.5)
    cut_off, other = RunningWorker(via_relay), RunningWorker(settings)
    on = years_before(datetime.now(UTC), 1)
    async with relay(port, host, real_port):
        await cut_off.start()
        await publish(settings, [moved_in(person(), on)])
        await wait_for(lambda: caught_up(sessions, settings, 1), within_s=60)
    await _end_other_connections(sessions)

    await other.start()  # a rebalance: the cut-off worker is given partitions it cannot seek
    await wait_for(lambda: _true(bool(_assigned(cut_off)) and bool(_assigned(other))))
    await asyncio.sleep(3 * settings.kafka_session_timeout_ms / 1000)
    assert not _assigned(cut_off) & _assigned(other)
    assert _assigned(cut_off) | _assigned(other) == set(range(settings.events_partitions))

    events = [moved_in(person(), on) for _ in range(20)]
    await publish(settings, events)
    async with relay(port, host, real_port):
        await wait_for(lambda: caught_up(sessions, settings, 21), within_s=60)
        await cut_off.stop()
    await other.stop()
    assert await count(sessions, Event) == 21


def _assigned(running: RunningWorker) -> set[int]:
    assert running.worker is not None
    consumer = running.worker._consumer
    return {tp.partition for tp in consumer.assignment()} if consumer else set()


def _batch_retries() -> float:
    [family] = metrics.BATCH_RETRIES.collect()
    return sum(s.value for s in family.samples if s.name.endswith("_total"))


async def _true(value: bool) -> bool:
    return value
