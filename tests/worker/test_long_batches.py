"""Worker behaviour around slow batches (issue 7, "Worker behaviour"):

- heartbeats keep flowing while a batch runs for several session timeouts, so the group
  does not rebalance under it and the batch commits, not fenced;
- SIGTERM during a batch: the batch finishes and commits, then the worker leaves (exit 0);
- batches are bounded (``worker_batch_max``) however long the backlog.

A batch is made slow for real: another connection holds ``consumer_offsets`` locked, so
the batch waits just before its offset write."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from structlog.testing import capture_logs
from tests.conftest import RunningWorker
from tests.e2e.test_publish_to_alert import caught_up, count, publish, wait_for
from tests.factories import moved_in, person, register_orgs, years_before

from lookout import metrics
from lookout.db import plain_url
from lookout.ingest.models import Event
from lookout.settings import Settings
from lookout.worker import Worker

pytestmark = pytest.mark.asyncio


async def _lock_offsets(settings: Settings) -> asyncpg.Connection:
    blocker = await asyncpg.connect(plain_url(settings.database_url))
    await blocker.execute("BEGIN; LOCK TABLE consumer_offsets IN ACCESS EXCLUSIVE MODE")
    return blocker


async def _until_a_batch_waits(blocker: asyncpg.Connection, within_s: float = 60) -> None:
    for _ in range(int(within_s / 0.1)):
        if await blocker.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("no batch reached its offset write")


def _event() -> dict[str, object]:
    return moved_in(person(), years_before(datetime.now(UTC), 1))


async def test_a_batch_longer_than_the_session_timeout_keeps_its_partitions(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], worker: RunningWorker
) -> None:
    await register_orgs(sessions)
    running = worker.worker
    assert running is not None
    await wait_for(lambda: _assigned(running, settings.events_partitions))
    assignments = dict(running.assignments)
    fenced = metrics.FENCED._value.get()
    blocker = await _lock_offsets(settings)
    await publish(settings, [_event()])
    await _until_a_batch_waits(blocker)
    await asyncio.sleep(3 * settings.kafka_session_timeout_ms / 1000)  # heartbeats must go on
    await blocker.execute("ROLLBACK")
    await blocker.close()
    await wait_for(lambda: caught_up(sessions, settings, 1))

    assert running.assignments == assignments  # no rebalance while the batch ran
    assert metrics.FENCED._value.get() == fenced  # and it committed, not fenced


async def _assigned(worker: Worker, partitions: int) -> bool:
    return len(worker.positions) == partitions


async def test_sigterm_mid_batch_finishes_and_commits_the_batch_then_exits_0(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await register_orgs(sessions)
    env = {
        **os.environ,
        "LOOKOUT_DATABASE_URL": settings.database_url,
        "LOOKOUT_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "LOOKOUT_EVENTS_TOPIC": settings.events_topic,
        "LOOKOUT_DLQ_TOPIC": settings.dlq_topic,
        "LOOKOUT_CONSUMER_GROUP": settings.consumer_group,
        "LOOKOUT_KAFKA_SESSION_TIMEOUT_MS": "2000",
        "LOOKOUT_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "LOOKOUT_WORKER_METRICS_PORT": "0",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lookout",
        "worker",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await publish(settings, [_event()])
        await wait_for(lambda: caught_up(sessions, settings, 1), within_s=60)  # assigned
        blocker = await _lock_offsets(settings)
        await publish(settings, [_event()])
        await _until_a_batch_waits(blocker)
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(1)
        assert proc.returncode is None  # still finishing its batch
        await blocker.execute("ROLLBACK")
        await blocker.close()
        code = await asyncio.wait_for(proc.wait(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert code == 0
    assert await count(sessions, Event) == 2  # the batch under way was committed
    assert await caught_up(sessions, settings, 2)


async def test_batches_stay_bounded_under_a_backlog(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await register_orgs(sessions)
    bounded = settings.model_copy(update={"worker_batch_max": 7, "kafka_max_poll_records": 7})
    await publish(settings, [_event() for _ in range(40)])  # the backlog, before any worker
    with capture_logs() as logs:
        running = RunningWorker(bounded)
        await running.start()
        try:
            await wait_for(lambda: caught_up(sessions, settings, 40), within_s=60)
        finally:
            await running.stop()
    sizes = [e["messages"] for e in logs if e.get("event") == "batch committed"]
    assert sum(sizes) == 40
    assert max(sizes) <= 7
