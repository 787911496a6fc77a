"""DESIGN.md "Order does not matter": the same events leave the same alerts whether they
arrive in one batch or spread over several. A late fact that falsifies an alert already
raised cannot delete it, so the comparison is of the alerts that stand (not marked for
review); an alert that a split raised and a later batch falsified must be in review."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import (
    NOW,
    Feeder,
    ed_attendance,
    event,
    moved_in,
    person,
    register_orgs,
    years_before,
)

from lookout.alerts.models import Alert
from lookout.alerts.service import FALSIFIED

pytestmark = pytest.mark.asyncio

# How the events are spread over consecutive batches (sizes, in arrival order).
SPLITS = {"one batch": (4,), "last event later": (3, 1), "one event per batch": (1, 1, 1, 1)}


async def feed_split(
    sessions: async_sessionmaker[AsyncSession],
    events: Sequence[dict[str, Any]],
    sizes: Sequence[int],
) -> None:
    feeder = Feeder(sessions)
    start = 0
    for size in sizes:
        await feeder.feed(events[start : start + size])
        start += size
    assert start == len(events)


async def standing_and_reviewed(
    sessions: async_sessionmaker[AsyncSession],
) -> tuple[set[str], list[str | None]]:
    async with sessions() as session:
        alerts = list((await session.execute(select(Alert))).scalars())
    standing = {a.rule_id for a in alerts if a.review_reason is None}
    return standing, [a.review_reason for a in alerts if a.review_reason is not None]


def retraction_of(retracted: dict[str, Any]) -> dict[str, Any]:
    return event(
        "event.retraction",
        {"retracted_event_id": retracted["id"], "reason": "entered_in_error"},
        source=retracted["source"],
    )


@pytest.mark.parametrize("sizes", SPLITS.values(), ids=SPLITS.keys())
async def test_a_retracted_only_residence_of_the_subject_leaves_no_standing_alert(
    sessions: async_sessionmaker[AsyncSession], sizes: tuple[int, ...]
) -> None:
    """The mother's only residence at the address is withdrawn: she never lived with the
    child, so her attendance has no child in her household. In one batch no alert is
    raised; when the withdrawal comes later, the alert raised meanwhile must go to review
    (the re-evaluation reads the events of those who lived there before the change too)."""
    await register_orgs(sessions)
    mother, child = person(years_before(NOW, 34)), person(years_before(NOW, 6))
    since = years_before(NOW, 1)
    home = moved_in(mother, since)
    events = [
        home,
        moved_in(child, since),
        ed_attendance(mother, at=NOW - timedelta(days=2)),
        retraction_of(home),
    ]
    await feed_split(sessions, events, sizes)
    standing, reviewed = await standing_and_reviewed(sessions)
    assert standing == set()
    # Raised before the withdrawal was known (any split): kept, and in review.
    assert reviewed == ([] if len(sizes) == 1 else [FALSIFIED])


@pytest.mark.parametrize(
    "sizes",
    [
        pytest.param((3,), id="one batch"),
        pytest.param((1, 2), id="attendance first"),
        pytest.param((2, 1), id="residences first"),
    ],
)
async def test_a_demographics_only_residence_links_whichever_batch_brings_the_nhs_number(
    sessions: async_sessionmaker[AsyncSession], sizes: tuple[int, ...]
) -> None:
    """The council knows the mother by name, date of birth and postcode; the hospital adds
    her NHS number. Everything agrees exactly (an auto-link score), so she is one person
    living with the child, and her attendance raises the alert, in any split."""
    await register_orgs(sessions)
    demographics = {
        "given_name": "Jane",
        "family_name": "Okafor",
        "birth_date": years_before(NOW, 34).isoformat(),
        "postcode": "E8 1DY",
    }
    mother = {**person(), **demographics}
    child = person(years_before(NOW, 6))
    since = years_before(NOW, 1)
    events = [
        moved_in(demographics, since),
        moved_in(child, since),
        ed_attendance(mother, at=NOW - timedelta(days=2)),
    ]
    if sizes == (1, 2):  # the attendance arrives first
        events = [events[2], events[0], events[1]]
    await feed_split(sessions, events, sizes)
    standing, _ = await standing_and_reviewed(sessions)
    assert standing == {"adult-substance-misuse-ed"}
