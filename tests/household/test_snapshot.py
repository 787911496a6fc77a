"""Household snapshots through the real pipeline: members, ages, joined dates, roles,
relationships, flags with their LA, and each child's school, as of any date."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import (
    ADDRESS,
    Feeder,
    enrolment,
    moved_in,
    moved_out,
    person,
    protection_plan,
    register_orgs,
    relationship,
)

from lookout.household import service
from lookout.household.models import Household
from lookout.household.snapshot import FlagFact
from lookout.ingest.models import Event

pytestmark = pytest.mark.asyncio


async def test_snapshot_as_of_dates(sessions: async_sessionmaker[AsyncSession]) -> None:
    await register_orgs(sessions)
    mother = person(date(1990, 5, 1))
    child = person(date(2018, 2, 1))
    lodger = person(date(1980, 1, 1))
    events = [
        moved_in(mother, date(2023, 1, 1)),
        moved_in(child, date(2023, 1, 1)),
        moved_in(lodger, date(2024, 6, 1)),
        moved_out(lodger, date(2024, 9, 1)),
        relationship(mother, child),
        protection_plan(child, "started", date(2024, 3, 1)),
        protection_plan(child, "ended", date(2024, 12, 1)),
        enrolment(child, date(2023, 9, 5), urn="100241"),
    ]
    # Order does not matter: feed them backwards, one per batch.
    await Feeder(sessions).feed_each(list(reversed(events)))
    async with sessions() as session:
        [household_id] = (await session.execute(select(Household.id))).scalars().all()
        rows = (await session.execute(select(Event.event_id, Event.subject_person_id))).all()
        ids = {event_id: int(pid or 0) for event_id, pid in rows}
        mother_id, child_id, lodger_id = (ids[e["id"]] for e in events[:3])
        summer, later = date(2024, 7, 1), date(2025, 1, 1)
        during, after = await service.snapshots(
            session, [(household_id, summer), (household_id, later)]
        )
    assert {m.person_id for m in during.members} == {mother_id, child_id, lodger_id}
    assert {m.person_id for m in after.members} == {mother_id, child_id}
    kid = during.member(child_id)
    assert kid is not None
    assert kid.age == 6
    assert kid.role == "child"
    assert kid.joined == date(2023, 1, 1)
    assert kid.flags == frozenset({"child_protection_plan"})
    assert kid.flag_details == (
        FlagFact("child_protection_plan", ADDRESS["la_code"], date(2024, 3, 1)),
    )
    assert kid.school_urn == "100241"
    lodger_member = during.member(lodger_id)
    assert lodger_member is not None
    assert lodger_member.joined == date(2024, 6, 1)
    assert lodger_member.role == "adult"
    assert during.relationships_to(child_id) == {mother_id: ("parent",)}
    assert during.relationships_to(mother_id) == {child_id: ("child",)}
    after_kid = after.member(child_id)
    assert after_kid is not None
    assert after_kid.flags == frozenset()
