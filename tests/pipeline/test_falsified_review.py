"""A late fact that makes a raised alert's conditions false never deletes it: the alert is
marked for review with the reason, its recipient is told (``alert.updated``), and the
change is audited. Alerts whose conditions still hold are left alone."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import (
    ADDRESS,
    NOW,
    Feeder,
    absence,
    address,
    ed_attendance,
    event,
    moved_in,
    moved_out,
    person,
    protection_plan,
    register_orgs,
    years_before,
)

from lookout.alerts.models import Alert, AlertEvidence
from lookout.alerts.service import CHILD_UNSUPPORTED, FALSIFIED
from lookout.audit.models import AuditRecord
from lookout.delivery.models import AlertEvent
from lookout.household.models import Household

pytestmark = pytest.mark.asyncio

SINCE = years_before(NOW, 1)
BEFORE_ATTENDANCE = (NOW - timedelta(days=3)).date()


async def _alerts(sessions: async_sessionmaker[AsyncSession]) -> list[Alert]:
    async with sessions() as session:
        return list((await session.execute(select(Alert))).scalars())


async def _told_and_audited(sessions: async_sessionmaker[AsyncSession], alert: Alert) -> None:
    """The recipient was told (``alert.updated`` in the outbox) and the change audited."""
    async with sessions() as session:
        told = (
            await session.execute(
                select(AlertEvent.org_id, AlertEvent.type, AlertEvent.details).where(
                    AlertEvent.alert_id == alert.id
                )
            )
        ).all()
        audited = (
            await session.execute(
                select(AuditRecord.object_id).where(
                    AuditRecord.action == "worker:alert:marked_for_review"
                )
            )
        ).scalars()
        assert list(audited) == [str(alert.id)]
    assert (alert.recipient_org_id, "alert.updated", {"change": "marked_for_review"}) in told


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
    await _told_and_audited(sessions, kept)


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


async def _two_children_and_an_attendance(
    sessions: async_sessionmaker[AsyncSession], at: datetime
) -> tuple[Feeder, dict[str, Any]]:
    """A mother and two children at ADDRESS since SINCE, and her ED attendance at ``at``
    (an alert naming both children); returns the feeder and the younger child."""
    await register_orgs(sessions)
    mother = person(years_before(NOW, 34))
    child, sibling = person(years_before(NOW, 6)), person(years_before(NOW, 9))
    feeder = Feeder(sessions)
    await feeder.feed(
        [
            moved_in(mother, SINCE),
            moved_in(child, SINCE),
            moved_in(sibling, SINCE),
            ed_attendance(mother, at=at),
        ]
    )
    return feeder, child


async def test_an_alert_that_still_holds_but_names_a_child_who_had_left_goes_to_review(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """One child had left before the attendance; the other still lived there. The alert
    still holds (for the sibling), but it names a child none of its events names now: it
    keeps both children (never removed) and is marked for review, not as falsified."""
    feeder, child = await _two_children_and_an_attendance(sessions, NOW)
    [raised] = await _alerts(sessions)
    assert raised.review_reason is None
    await feeder.feed([moved_out(child, BEFORE_ATTENDANCE, at=NOW - timedelta(days=3))])
    [kept] = await _alerts(sessions)
    assert kept.review_reason == CHILD_UNSUPPORTED
    assert kept.children == raised.children
    assert len(kept.children) == 2
    await _told_and_audited(sessions, kept)


async def test_an_alert_whose_events_still_name_all_its_children_is_not_marked(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A late residence (another adult, there all along) changes the household on the
    attendance's date: evaluated again, the attendance still names both children, and the
    alert is left alone."""
    feeder, _ = await _two_children_and_an_attendance(sessions, NOW - timedelta(days=3))
    [raised] = await _alerts(sessions)
    await feeder.feed([moved_in(person(years_before(NOW, 40)), SINCE)])
    [kept] = await _alerts(sessions)
    assert kept.review_reason is None
    assert kept.children == raised.children
    assert len(kept.children) == 2
    async with sessions() as session:  # the attendance was evaluated again, naming both
        evidence = (await session.execute(select(AlertEvidence))).scalars().all()
    assert [sorted(e.children or ()) for e in evidence] == [sorted(raised.children)]


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


def _retraction(of: dict[str, Any]) -> dict[str, Any]:
    return event(
        "event.retraction",
        {"retracted_event_id": of["id"], "reason": "entered_in_error"},
        source=of["source"],
    )


async def test_the_subjects_only_residence_retracted_sends_the_alert_to_review(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The adult's move-in was entered in error: she never lived with the child, so the
    household she now never lived in is still re-evaluated and her alert goes to review."""
    await register_orgs(sessions)
    mother, child = person(years_before(NOW, 34)), person(years_before(NOW, 6))
    feeder = Feeder(sessions)
    residence = moved_in(mother, SINCE)
    await feeder.feed([residence, moved_in(child, SINCE), ed_attendance(mother, at=NOW)])
    [raised] = await _alerts(sessions)
    assert raised.review_reason is None
    await feeder.feed([_retraction(residence)])
    [kept] = await _alerts(sessions)
    assert kept.id == raised.id
    assert kept.review_reason == FALSIFIED
    await _told_and_audited(sessions, kept)


async def test_a_retracted_residence_leaves_the_alert_of_the_subjects_other_home_alone(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The adult lived in two households, each with a child: only the alert of the one
    whose residence was retracted goes to review."""
    await register_orgs(sessions)
    mother = person(years_before(NOW, 34))
    child, other_child = person(years_before(NOW, 6)), person(years_before(NOW, 8))
    elsewhere = address(78)
    feeder = Feeder(sessions)
    residence = moved_in(mother, SINCE)
    second = event(
        "person.residence",
        {
            "person": mother,
            "address": elsewhere,
            "change": "moved_in",
            "date": SINCE.isoformat(),
            "keeps_previous": True,
        },
    )
    await feeder.feed(
        [
            residence,
            second,
            moved_in(child, SINCE),
            moved_in(other_child, SINCE, elsewhere),
            ed_attendance(mother, at=NOW),
        ]
    )
    raised = await _alerts(sessions)
    assert len({a.household_id for a in raised}) == 2
    await feeder.feed([_retraction(residence)])
    async with sessions() as session:
        retracted_home = (
            await session.execute(select(Household.id).where(Household.uprn == ADDRESS["uprn"]))
        ).scalar_one()
    after = {a.household_id: (a.id, a.review_reason) for a in await _alerts(sessions)}
    assert {i for i, _ in after.values()} == {a.id for a in raised}
    assert {h: reason for h, (_, reason) in after.items()} == {
        retracted_home: FALSIFIED,
        next(h for h in after if h != retracted_home): None,
    }


async def test_a_child_subjects_only_residence_retracted_sends_the_alert_to_review(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A child on a plan attends hospital (the plan's LA is told about its household); the
    child's move-in is retracted: the alert about that household goes to review."""
    await register_orgs(sessions)
    child = person(years_before(NOW, 6))
    feeder = Feeder(sessions)
    residence = moved_in(child, SINCE)
    await feeder.feed(
        [
            residence,
            protection_plan(child, "started", SINCE),
            ed_attendance(child, ["injury"], at=NOW),
        ]
    )
    [raised] = await _alerts(sessions)
    assert raised.rule_id == "cp-child-unscheduled-care"
    await feeder.feed([_retraction(residence)])
    [kept] = await _alerts(sessions)
    assert kept.review_reason == FALSIFIED
    await _told_and_audited(sessions, kept)


async def test_a_move_in_elsewhere_on_the_same_day_sends_the_alert_to_review(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Learnt later: on the day the adult moved in with the child she moved in elsewhere
    (the later event wins the day), so her residence with the child ends the day it begins,
    which is none at all, and her alert there goes to review."""
    await register_orgs(sessions)
    mother, child = person(years_before(NOW, 34)), person(years_before(NOW, 6))
    feeder = Feeder(sessions)
    await feeder.feed(
        [moved_in(mother, SINCE), moved_in(child, SINCE), ed_attendance(mother, at=NOW)]
    )
    await feeder.feed([moved_in(mother, SINCE, address(79), at=NOW - timedelta(days=1))])
    [kept] = await _alerts(sessions)
    assert kept.review_reason == FALSIFIED
    await _told_and_audited(sessions, kept)


async def test_a_retracted_residence_of_the_child_sends_its_school_concern_to_review(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Rule 6 (a child's absence after an adult's crisis at home): the child's move-in was
    entered in error, so the crisis was not in the child's household."""
    await register_orgs(sessions)
    mother, child = person(years_before(NOW, 34)), person(years_before(NOW, 9))
    feeder = Feeder(sessions)
    residence = moved_in(child, SINCE)
    await feeder.feed(
        [
            moved_in(mother, SINCE),
            residence,
            ed_attendance(mother, ["mental_health"], at=NOW - timedelta(days=20)),
            absence(child, at=NOW),
        ]
    )
    [raised] = await _alerts(sessions)
    assert raised.rule_id == "school-concern-adult-crisis"
    await feeder.feed([_retraction(residence)])
    [kept] = await _alerts(sessions)
    assert kept.review_reason == FALSIFIED
    await _told_and_audited(sessions, kept)
