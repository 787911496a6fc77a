"""The retention job: purges personal data past its period, records what it purged, keeps
the audit chain verifiable, and never breaks dedupe."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import (
    NOW,
    Feeder,
    ed_attendance,
    moved_in,
    person,
    register_orgs,
    seal,
    with_state_dir,
    years_before,
)

from lookout.alerts.models import Alert, AlertEvidence
from lookout.audit import signing
from lookout.audit.models import AuditRecord
from lookout.audit.verify import verify
from lookout.ingest.models import Event, Rejection
from lookout.retention.service import run_retention
from lookout.settings import Settings

pytestmark = pytest.mark.asyncio


async def test_purge_then_verify_then_a_replay_is_still_a_duplicate(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    settings = with_state_dir(settings, tmp_path)
    await register_orgs(sessions)
    mother, child = person(years_before(NOW, 30)), person(years_before(NOW, 3))
    since = years_before(NOW, 1)
    events = [moved_in(mother, since), moved_in(child, since), ed_attendance(mother)]
    feeder = Feeder(sessions)
    await feeder.feed([*events, b"{not json"])
    async with sessions() as session, session.begin():
        await session.execute(
            update(Alert).values(status="closed", outcome="no_further_action", closed_at=NOW)
        )
    await seal(settings)

    # Nothing is due a day later.
    early = await run_retention(sessions, settings, NOW + timedelta(days=1))
    assert (early.events, early.alerts, early.rejections) == (0, 0, 0)

    later = NOW + timedelta(days=3 * 365)
    purged = await run_retention(sessions, settings, later)
    assert (purged.events, purged.alerts, purged.rejections) == (3, 1, 1)
    async with sessions() as session:
        stored = list((await session.execute(select(Event).order_by(Event.id))).scalars())
        alert = (await session.execute(select(Alert))).scalar_one()
        evidence = (await session.execute(select(AlertEvidence.children))).scalars().all()
        rejection = (await session.execute(select(Rejection))).scalar_one()
        records = list(
            (
                await session.execute(
                    select(AuditRecord).where(AuditRecord.action.like("retention:%"))
                )
            ).scalars()
        )
    assert all(e.data is None and e.subject_ref == "" for e in stored)
    assert all(len(e.content_hash) == 32 for e in stored)  # dedupe keeps working on these
    assert (alert.summary, alert.children, alert.purged_at is not None) == ("", [], True)
    assert alert.explanation == {"purged": True}
    assert evidence == [None]  # the children the evidence named went with the alert's
    assert (rejection.raw, rejection.kafka_key, rejection.detail) == (None, None, "")
    by_action = {r.action: r.details for r in records}
    assert by_action["retention:event:purged"]["count"] == 3
    assert by_action["retention:event:purged"]["ids"] == [str(e.id) for e in stored]
    assert by_action["retention:alert:purged"]["ids"] == [str(alert.id)]
    assert by_action["retention:rejection:purged"]["ids"] == [str(rejection.id)]

    # Running it again purges nothing more and records nothing more.
    again = await run_retention(sessions, settings, later)
    assert (again.events, again.alerts, again.rejections) == (0, 0, 0)

    await seal(settings)
    async with sessions() as session:
        report = await verify(
            session, signing.verify_key(settings), signing.checkpoint_dir(settings)
        )
    assert report.ok, report.problem
    assert report.unsealed == 0

    replay = await feeder.feed(events)
    assert (replay.accepted, replay.duplicates) == (0, 3)
    assert replay.alerts == []
    async with sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Alert))).scalar() == 1
        assert (await session.execute(select(func.count()).select_from(Event))).scalar() == 3
