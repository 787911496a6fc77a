"""Three worker processes in one consumer group share the partitions and produce exactly
the alerts that the rules imply, once each; ``lookout status`` then shows no lag."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.e2e.test_publish_to_alert import caught_up, publish, wait_for
from tests.factories import LA, ed_attendance, moved_in, person, register_orgs, years_before

from lookout import kafka
from lookout.alerts.models import Alert
from lookout.embedded.postgres import free_port
from lookout.household.models import Household
from lookout.settings import Settings

pytestmark = pytest.mark.asyncio
HOUSEHOLDS = 30


def households(now: datetime) -> tuple[list[dict[str, Any]], set[str]]:
    """Every third household has no child: the rest must each raise one alert."""
    events, expected = [], set()
    since = years_before(now, 1)
    for n in range(HOUSEHOLDS):
        address = {"uprn": str(300_000_000_000 + n), "la_code": LA}
        adult = person(years_before(now, 30 + n % 20))
        members = [adult] + (
            [person(years_before(now, 1 + n % 15))] if n % 3 else [person(years_before(now, 60))]
        )
        events += [moved_in(m, since, address, at=now - timedelta(days=200)) for m in members]
        events.append(ed_attendance(adult, at=now - timedelta(minutes=n)))
        if n % 3:
            expected.add(address["uprn"])
    return events, expected


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "lookout", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_three_workers_split_the_load_with_the_same_results(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    settings = settings.model_copy(update={"events_partitions": 6})
    await kafka.ensure_topics(
        settings.kafka_bootstrap_servers, {settings.events_topic: 6, settings.dlq_topic: 6}
    )
    await register_orgs(sessions)
    ports = [free_port() for _ in range(3)]
    env = {
        **os.environ,
        "LOOKOUT_DATABASE_URL": settings.database_url,
        "LOOKOUT_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "LOOKOUT_EVENTS_TOPIC": settings.events_topic,
        "LOOKOUT_DLQ_TOPIC": settings.dlq_topic,
        "LOOKOUT_EVENTS_PARTITIONS": "6",
        "LOOKOUT_CONSUMER_GROUP": settings.consumer_group,
        "LOOKOUT_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "LOOKOUT_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
    }
    workers = [start_worker({**env, "LOOKOUT_WORKER_METRICS_PORT": str(port)}) for port in ports]
    http = httpx.AsyncClient(timeout=5)
    try:

        async def balanced() -> bool:
            try:
                texts = [(await http.get(f"http://127.0.0.1:{p}/metrics")).text for p in ports]
            except httpx.HTTPError:
                return False
            return all(
                re.search(r"^lookout_worker_assigned_partitions 2\.0$", t, re.M) for t in texts
            )

        await wait_for(balanced, within_s=120)  # all three hold two partitions each
        events, expected = households(datetime.now(UTC))
        await publish(settings, events)
        await wait_for(lambda: caught_up(sessions, settings, len(events)), within_s=120)

        consumed = []
        for port in ports:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            values = re.findall(
                r'^lookout_events_consumed_total\{[^}]*outcome="accepted"[^}]*\} (\S+)$', text, re.M
            )
            consumed.append(sum(float(v) for v in values))
        assert sum(consumed) == len(events)
        assert all(n > 0 for n in consumed), consumed  # the load is split over all three

        async with sessions() as session:
            rows = (
                (
                    await session.execute(
                        select(Household.uprn).join(Alert, Alert.household_id == Household.id)
                    )
                )
                .scalars()
                .all()
            )
        assert sorted(rows) == sorted(expected)  # each expected alert exactly once

        status = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lookout", "status", env=env, stdout=asyncio.subprocess.PIPE
        )
        stdout, _ = await asyncio.wait_for(status.communicate(), timeout=60)
        screen = stdout.decode()
        assert status.returncode == 0
        assert "total lag: 0" in screen
        assert "open alerts: high 20" in screen
        assert "webhook subscriptions disabled: 0" in screen
        assert "last audit checkpoint: none yet" in screen  # no sealer in this test
    finally:
        await http.aclose()
        for w in workers:
            w.terminate()
        for w in workers:
            assert w.wait(timeout=30) == 0  # SIGTERM: finish the batch, leave the group, exit 0
