"""A late fact that makes a raised alert's conditions false never deletes it: the alert is
marked for review with the reason, its recipient is told (``alert.updated``), and the
change is audited. Alerts whose conditions still hold are left alone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import (
    NOW,
    Feeder,
    address,
    ed_attendance,
    event,
    moved_in,
    moved_out,
    person,
    register_orgs,
    years_before,
)

from lookout.alerts.models import Alert
from lookout.alerts.service import FALSIFIED
from lookout.audit.models import AuditRecord
from lookout.delivery.models import AlertEvent

pytestmark = pytest.mark.asyncio

SINCE = years_before(NOW, 1)
BEFORE_ATTENDANCE = (NOW - timedelta(days=3)).date()


async def _alerts(sessions: async_sessionmaker[AsyncSession]) -> list[Alert]:
    async with sessions() as session:
        return list((await session.execute(select(Alert))).scalars())


async def test_a_child_who_had_moved_out_before_the_event_sends_the_alert_to_review(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    mother, child = person(years_before(NOW, 34)), person(years_before(NOW, 6))
    feeder = Feeder(sessions)
    await feeder.feed(
        [moved_in(mother, SINCE), moved_in(child, SINCE), ed_attendance(mother, at=NOW)]
    )
    [raised] = await _alerts(sessions)
    assert raised.review_reason is None
    # Learnt later: the child had left three days before the attendance.
    await feeder.feed([moved_out(child, BEFORE_ATTENDANCE, at=NOW - timedelta(days=3))])
    [kept] = await _alerts(sessions)
    assert kept.id == raised.id
    assert kept.review_reason == FALSIFIED
    async with sessions() as session:
        told = (
            await session.execute(
                select(AlertEvent.type, AlertEvent.details).where(AlertEvent.alert_id == kept.id)
            )
        ).all()
        audited = (
            await session.execute(
                select(AuditRecord.object_id).where(
                    AuditRecord.action == "worker:alert:marked_for_review"
                )
            )
        ).scalars()
        assert set(audited) == {str(kept.id)}
    assert ("alert.updated", {"change": "marked_for_review"}) in [(t, d) for t, d in told]


async def test_the_subject_who_had_moved_out_sends_the_alert_to_review(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    mother, child = person(years_before(NOW, 34)), person(years_before(NOW, 6))
    feeder = Feeder(sessions)
    await feeder.feed(
        [moved_in(mother, SINCE), moved_in(child, SINCE), ed_attendance(mother, at=NOW)]
    )
    await feeder.feed([moved_out(mother, BEFORE_ATTENDANCE, at=NOW - timedelta(days=3))])
    [kept] = await _alerts(sessions)
    assert kept.review_reason == FALSIFIED


async def test_an_alert_whose_conditions_still_hold_is_not_marked(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    mother = person(years_before(NOW, 34))
    child, sibling = person(years_before(NOW, 6)), person(years_before(NOW, 9))
    feeder = Feeder(sessions)
    await feeder.feed(
        [
            moved_in(mother, SINCE),
            moved_in(child, SINCE),
            moved_in(sibling, SINCE),
            ed_attendance(mother, at=NOW),
        ]
    )
    # One child had left; the other still lived there: the alert stands.
    await feeder.feed([moved_out(child, BEFORE_ATTENDANCE, at=NOW - timedelta(days=3))])
    [kept] = await _alerts(sessions)
    assert kept.review_reason is None


async def test_a_later_match_keeps_the_alert_supported(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Evidence from before the child left no longer holds, but a later attendance with the
    child at home does: the alert still has support, so it is not marked."""
    await register_orgs(sessions)
    mother, child = person(years_before(NOW, 34)), person(years_before(NOW, 6))
    elsewhere = address(77)
    feeder = Feeder(sessions)
    await feeder.feed(
        [
            moved_in(mother, SINCE),
            moved_in(child, SINCE),
            ed_attendance(mother, at=NOW - timedelta(days=10)),
            ed_attendance(mother, at=NOW),
        ]
    )
    [raised] = await _alerts(sessions)
    # Learnt later: the child was away (elsewhere) between 12 and 5 days ago.
    await feeder.feed(
        [
            moved_in(child, (NOW - timedelta(days=12)).date(), elsewhere),
            moved_in(child, (NOW - timedelta(days=5)).date()),
        ]
    )
    [kept] = await _alerts(sessions)
    assert kept.id == raised.id
    assert kept.review_reason is None


async def test_a_retracted_residence_sends_the_alert_it_supported_to_review(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    mother, child = person(years_before(NOW, 34)), person(years_before(NOW, 6))
    feeder = Feeder(sessions)
    residence = moved_in(child, SINCE)
    await feeder.feed([moved_in(mother, SINCE), residence, ed_attendance(mother, at=NOW)])
    await feeder.feed(
        [
            event(
                "event.retraction",
                {"retracted_event_id": residence["id"], "reason": "entered_in_error"},
                source=residence["source"],
            )
        ]
    )
    [kept] = await _alerts(sessions)
    assert kept.review_reason == FALSIFIED
