"""A graph change re-evaluates the stored trigger events on the dates it changed, and only
those: a late fact that matters to an earlier event still raises its alert, and one that
changes the household after an event leaves that event alone. A late event that history
windows count re-evaluates only the trigger events those windows reach: their rules'
trigger types, within the window after it, of its subject or (scope household) its
households."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import (
    ADDRESS,
    NOW,
    Feeder,
    absence,
    domestic_abuse_incident,
    ed_attendance,
    moved_in,
    person,
    pipeline_config,
    protection_plan,
    register_orgs,
    register_police,
    years_before,
)

from lookout.alerts.models import Alert
from lookout.ingest.models import Event
from lookout.pipeline import Counting
from lookout.rules.evaluator import evaluate

pytestmark = pytest.mark.asyncio


async def rules_raised(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        return sorted((await session.execute(select(Alert.rule_id))).scalars())


def record_evaluations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The trigger event pks the pipeline hands to the evaluator, in order."""
    seen: list[int] = []

    def spy(rules: Any, trigger: Any, snapshot: Any, past: Any) -> Any:
        seen.append(trigger.event_pk)
        return evaluate(rules, trigger, snapshot, past)

    monkeypatch.setattr("lookout.pipeline.evaluate", spy)
    return seen


async def settled(sessions: async_sessionmaker[AsyncSession], *residents: Any) -> Feeder:
    """A feeder, with the organisations registered and ``residents`` moved in at ADDRESS
    two years ago."""
    await register_orgs(sessions)
    feeder = Feeder(sessions, pipeline_config())
    await feeder.feed([moved_in(p, years_before(NOW, 2)) for p in residents])
    return feeder


async def pk_of(sessions: async_sessionmaker[AsyncSession], event_type: str) -> int | None:
    async with sessions() as session:
        return await session.scalar(select(Event.id).where(Event.type == event_type))


async def test_a_child_who_moved_in_before_an_earlier_attendance_raises_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    adult, child = person(years_before(NOW, 34)), person(years_before(NOW, 6))
    feeder = Feeder(sessions, pipeline_config())
    await feeder.feed([moved_in(adult, years_before(NOW, 2))])
    await feeder.feed([ed_attendance(adult, at=NOW - timedelta(days=5))])
    assert await rules_raised(sessions) == []
    # Arrives later, dated before the attendance: the household changed on its date.
    await feeder.feed([moved_in(child, (NOW - timedelta(days=10)).date())])
    assert await rules_raised(sessions) == ["adult-substance-misuse-ed"]


async def test_a_late_protection_plan_dated_before_an_attendance_raises_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    child = person(years_before(NOW, 6))
    feeder = Feeder(sessions, pipeline_config())
    await feeder.feed([moved_in(child, years_before(NOW, 2))])
    await feeder.feed([ed_attendance(child, ("injury",), at=NOW - timedelta(days=3))])
    assert "cp-child-unscheduled-care" not in await rules_raised(sessions)
    await feeder.feed([protection_plan(child, "started", (NOW - timedelta(days=20)).date())])
    assert "cp-child-unscheduled-care" in await rules_raised(sessions)


@pytest.mark.parametrize(("days_before", "evaluated_again"), [(25, True), (5, False)])
async def test_a_move_in_re_evaluates_only_events_on_or_after_its_date(
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    days_before: int,
    evaluated_again: bool,
) -> None:
    await register_orgs(sessions)
    adult, child, lodger = (
        person(years_before(NOW, 34)),
        person(years_before(NOW, 6)),
        person(years_before(NOW, 40)),
    )
    feeder = Feeder(sessions, pipeline_config())
    await feeder.feed(
        [moved_in(adult, years_before(NOW, 2)), moved_in(child, years_before(NOW, 2))]
    )
    await feeder.feed([ed_attendance(adult, at=NOW - timedelta(days=20))])
    assert await rules_raised(sessions) == ["adult-substance-misuse-ed"]
    async with sessions() as session:
        attendance = await session.scalar(
            select(Event.id).where(Event.type == "uk.lookout.health.ed_attendance.v1")
        )
    seen = record_evaluations(monkeypatch)
    await feeder.feed([moved_in(lodger, (NOW - timedelta(days=days_before)).date())])
    assert (attendance in seen) is evaluated_again
    assert await rules_raised(sessions) == ["adult-substance-misuse-ed"]  # nothing new


async def test_a_residence_that_did_not_change_re_evaluates_nothing(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    await register_orgs(sessions)
    adult, child = person(years_before(NOW, 34)), person(years_before(NOW, 6))
    since = years_before(NOW, 2)
    feeder = Feeder(sessions, pipeline_config())
    await feeder.feed([moved_in(adult, since), moved_in(child, since)])
    await feeder.feed([ed_attendance(adult, at=NOW - timedelta(days=20))])
    async with sessions() as session:
        stored = set((await session.execute(select(Event.id))).scalars())
    seen = record_evaluations(monkeypatch)
    # The same move-in again, as a new event: the residences come out the same, so only
    # the new event itself (an adult's move-in is a trigger of the new-adult rule) is
    # evaluated.
    await feeder.feed([moved_in(adult, since)])
    assert seen
    assert not set(seen) & stored


@pytest.mark.parametrize(
    ("late", "absence_again", "adult_attendance_again"),
    [
        # Counted by the school-concern rule's window only (its triggers are absences and
        # exclusions; scope household).
        ("incident", True, False),
        ("alcohol", True, False),
        # Counted by the repeat-injury rule's window only (attendances; scope subject): the
        # adult's own attendance, not the infant's, nor the child's absence.
        ("injury", False, True),
        # Counted by no window: its type is theirs, but no condition holds.
        ("other", False, False),
    ],
)
async def test_a_late_history_event_re_evaluates_only_what_the_windows_counting_it_reach(
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    late: str,
    absence_again: bool,
    adult_attendance_again: bool,
) -> None:
    adult, child = person(years_before(NOW, 34)), person(years_before(NOW, 9))
    infant = person((NOW - timedelta(days=300)).date())
    feeder = await settled(sessions, adult, child, infant)
    await register_police(sessions)
    earlier = NOW - timedelta(days=5)
    await feeder.feed(
        [
            ed_attendance(adult, at=earlier),
            ed_attendance(infant, ("injury",), at=earlier),
            absence(child, at=earlier),
        ]
    )
    async with sessions() as session:
        stored = (await session.execute(select(Event.id, Event.type, Event.data))).all()
    absence_pk = next(pk for pk, t, _ in stored if t == "uk.lookout.education.absence.v1")
    adult_pk, infant_pk = (
        pk
        for wanted in (["alcohol"], ["injury"])
        for pk, _, data in stored
        if (data or {}).get("presenting_reasons") == wanted
    )
    seen = record_evaluations(monkeypatch)
    late_at = NOW - timedelta(days=10)
    await feeder.feed(
        [
            domestic_abuse_incident([adult], at=late_at)
            if late == "incident"
            else ed_attendance(adult, (late,), at=late_at)
        ]
    )
    assert (absence_pk in seen) is absence_again
    assert (adult_pk in seen) is adult_attendance_again
    assert infant_pk not in seen


async def test_late_history_events_in_one_batch_each_reach_only_their_own_windows(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    adult, child, neighbour = (person(years_before(NOW, age)) for age in (34, 9, 40))
    feeder = await settled(sessions, adult, child)
    elsewhere = {**ADDRESS, "uprn": "100023336957"}
    await feeder.feed([moved_in(neighbour, years_before(NOW, 2), elsewhere)])
    await feeder.feed([absence(child, at=NOW - timedelta(days=5))])
    absence_pk = await pk_of(sessions, "uk.lookout.education.absence.v1")
    seen = record_evaluations(monkeypatch)
    # An injury of the adult (a window of the subject only) and an alcohol attendance of
    # someone in another household (a household window): neither reaches the child.
    await feeder.feed(
        [
            ed_attendance(adult, ("injury",), at=NOW - timedelta(days=10)),
            ed_attendance(neighbour, at=NOW - timedelta(days=10)),
        ]
    )
    assert absence_pk not in seen


async def test_a_late_history_event_outside_a_window_of_the_triggers_re_evaluates_nothing(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    adult, child = person(years_before(NOW, 34)), person(years_before(NOW, 9))
    feeder = await settled(sessions, adult, child)
    await feeder.feed([absence(child, at=NOW - timedelta(days=5))])
    seen = record_evaluations(monkeypatch)
    # 95 days before the absence: the school-concern window is 90 days.
    await feeder.feed([ed_attendance(adult, at=NOW - timedelta(days=100))])
    assert seen == []


async def test_each_history_event_maps_to_the_windows_whose_type_and_condition_count_it() -> None:
    config = pipeline_config()
    school = frozenset({"uk.lookout.education.absence.v1", "uk.lookout.education.exclusion.v1"})
    attendance = "uk.lookout.health.ed_attendance.v1"
    assert config.counting(
        "uk.lookout.police.domestic_abuse_incident.v1", {"persons_involved": []}
    ) == [Counting(school, timedelta(days=90), subject_only=False)]
    assert config.counting(attendance, {"presenting_reasons": ["injury", "alcohol"]}) == [
        Counting(frozenset({attendance}), timedelta(days=30), subject_only=True),
        Counting(school, timedelta(days=90), subject_only=False),
    ]
    assert config.counting(attendance, {"presenting_reasons": ["other"]}) == []
    assert config.counting(attendance, {}) == []  # the condition fails: counted by none
    assert config.counting("uk.lookout.person.residence.v1", {}) == []
