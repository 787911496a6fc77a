"""Gapless per-organisation sequences and the alert-event outbox, written by the pipeline."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import (
    LA,
    OTHER_LA,
    Feeder,
    event,
    pipeline_config,
    raise_alerts,
    raise_alerts_for,
    register_orgs,
)

from lookout.alerts.models import Alert
from lookout.delivery.models import AlertEvent
from lookout.orgs.models import Organisation

pytestmark = pytest.mark.asyncio


async def sequences(sessions: async_sessionmaker[AsyncSession], org_id: str) -> list[int]:
    async with sessions() as session:
        rows = await session.execute(
            select(Alert.sequence).where(Alert.recipient_org_id == org_id).order_by(Alert.sequence)
        )
        return [int(s or 0) for s in rows.scalars()]


async def outbox(sessions: async_sessionmaker[AsyncSession], org_id: str) -> list[AlertEvent]:
    async with sessions() as session:
        rows = await session.execute(
            select(AlertEvent).where(AlertEvent.org_id == org_id).order_by(AlertEvent.sequence)
        )
        return list(rows.scalars())


async def test_each_organisation_numbers_its_alerts_from_one_without_gaps(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    await raise_alerts(sessions, 2)
    await raise_alerts(sessions, 1, la_code=OTHER_LA)
    await raise_alerts(sessions, 3)
    assert await sequences(sessions, "hackney-cs") == [1, 2, 3, 4, 5]
    assert await sequences(sessions, "barking-cs") == [1]
    events = await outbox(sessions, "hackney-cs")
    assert [e.sequence for e in events] == [1, 2, 3, 4, 5]
    assert {e.type for e in events} == {"alert.created"}
    async with sessions() as session:
        by_id = {a.id: a for a in (await session.execute(select(Alert))).scalars()}
    assert all(by_id[e.alert_id].sequence == e.alert_sequence for e in events)
    assert all(a.review_by is not None and a.review_by > a.created_at for a in by_id.values())


async def test_concurrent_batches_for_one_organisation_still_number_without_gaps(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    results = await asyncio.gather(*(raise_alerts(sessions, 2) for _ in range(6)))
    assert sum(len(r.alerts) for r in results) == 12
    assert await sequences(sessions, "hackney-cs") == list(range(1, 13))
    assert [e.sequence for e in await outbox(sessions, "hackney-cs")] == list(range(1, 13))


async def test_batches_raising_alerts_for_several_organisations_number_each_1_to_n(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Each batch advances the counters of both organisations at once; batches listing
    them in either order run concurrently without deadlock or gaps."""
    await register_orgs(sessions)
    first = await raise_alerts_for(sessions, {LA: 2, OTHER_LA: 1})
    assert len(first.alerts) == 3
    assert await sequences(sessions, "hackney-cs") == [1, 2]
    assert await sequences(sessions, "barking-cs") == [1]
    mixes = [{LA: 1, OTHER_LA: 2}, {OTHER_LA: 2, LA: 1}] * 3
    results = await asyncio.gather(*(raise_alerts_for(sessions, m) for m in mixes))
    assert sum(len(r.alerts) for r in results) == 18
    assert await sequences(sessions, "hackney-cs") == list(range(1, 9))
    assert await sequences(sessions, "barking-cs") == list(range(1, 14))
    for org in ("hackney-cs", "barking-cs"):
        events = await outbox(sessions, org)
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        assert sorted(e.alert_sequence for e in events) == await sequences(sessions, org)


async def test_a_retraction_marks_the_alert_for_review_and_tells_the_recipient(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    from tests.factories import HOSPITAL, household_events

    events = household_events()
    feeder = Feeder(sessions, pipeline_config(group_id="g-retract"))
    await feeder.feed(events)
    trigger = events[-1]
    await feeder.feed(
        [
            event(
                "event.retraction",
                {"retracted_event_id": trigger["id"], "reason": "entered_in_error"},
                source=HOSPITAL,
            )
        ]
    )
    [created, updated] = await outbox(sessions, "hackney-cs")
    assert (created.type, updated.type) == ("alert.created", "alert.updated")
    assert updated.details == {"change": "marked_for_review"}
    assert updated.alert_id == created.alert_id
    async with sessions() as session:
        alert = (await session.execute(select(Alert))).scalar_one()
    assert alert.review_reason


@given(
    batches=st.lists(
        st.tuples(st.sampled_from([LA, OTHER_LA]), st.integers(min_value=0, max_value=3)),
        min_size=1,
        max_size=5,
    )
)
@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
async def test_any_mix_of_concurrent_batches_numbers_each_organisation_1_to_n(
    sessions: async_sessionmaker[AsyncSession], batches: list[tuple[str, int]]
) -> None:
    async with sessions() as session:
        known = (await session.execute(select(Organisation.id))).scalars().all()
    if not known:
        await register_orgs(sessions)
    await asyncio.gather(*(raise_alerts(sessions, n, la_code=la) for la, n in batches if n))
    for org in ("hackney-cs", "barking-cs"):
        numbers = await sequences(sessions, org)
        assert numbers == list(range(1, len(numbers) + 1))
        assert [e.sequence for e in await outbox(sessions, org)] == numbers
