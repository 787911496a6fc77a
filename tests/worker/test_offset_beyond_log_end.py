"""A stored offset beyond the log end (same broker cluster) stops that partition and
tells the operator; the operator chooses where to resume (audited). Never a silent skip."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.cli.test_cli import lookout
from tests.conftest import RunningWorker
from tests.e2e.test_publish_to_alert import caught_up, count, publish, wait_for
from tests.factories import moved_in, person, register_orgs, years_before

from lookout.audit.models import AuditRecord
from lookout.ingest.models import ConsumerOffset, Event
from lookout.settings import Settings

pytestmark = pytest.mark.asyncio


async def test_stop_then_operator_resumes(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], worker: RunningWorker
) -> None:
    await register_orgs(sessions)
    first = moved_in(person(), years_before(datetime.now(UTC), 1))
    await publish(settings, [first])
    await wait_for(lambda: caught_up(sessions, settings, 1))

    await worker.stop()
    async with sessions() as session, session.begin():
        partition = (
            await session.execute(
                select(ConsumerOffset.partition).where(ConsumerOffset.next_offset == 1)
            )
        ).scalar_one()
        await session.execute(
            update(ConsumerOffset)
            .where(ConsumerOffset.partition == partition)
            .values(next_offset=50)
        )
    running = await worker.start()
    await wait_for(
        lambda: count(sessions, AuditRecord, AuditRecord.action == "worker:partition:stopped")
    )
    assert list(running.stopped) == [(settings.events_topic, partition)]

    # A new event on that partition (same key) waits: nothing is skipped or reset.
    second = moved_in(person(), years_before(datetime.now(UTC), 1))
    second["subject"] = first["subject"]
    await publish(settings, [second])
    shown = lookout(settings, "offsets")
    assert f"partition {partition}: stored 50" in shown.stdout
    assert "STOPPED" in shown.stdout
    assert await count(sessions, Event) == 1

    moved = lookout(
        settings,
        "offsets",
        "resume",
        "--partition",
        str(partition),
        "--to",
        "1",
        "--by",
        "on-call",
        "--reason",
        "broker log was replaced",
    )
    assert moved.returncode == 0, moved.stderr
    await wait_for(lambda: count(sessions, Event, Event.event_id == second["id"]))
    assert running.stopped == {}
    async with sessions() as session:
        audit = (
            await session.execute(
                select(AuditRecord).where(AuditRecord.action == "operator:partition:offset_moved")
            )
        ).scalar_one()
    assert audit.end_user == "on-call"
    assert audit.details["from"] == 50
    assert audit.details["to"] == 1
