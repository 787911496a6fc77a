"""Starter rule 4 (history window) through the real pipeline on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import (
    NOW,
    Feeder,
    ed_attendance,
    moved_in,
    person,
    register_orgs,
    years_before,
)

from lookout.alerts.models import Alert

pytestmark = pytest.mark.asyncio
RULE = "infant-repeat-injury"


async def rule_alerts(sessions: async_sessionmaker[AsyncSession]) -> list[Alert]:
    async with sessions() as session:
        return list((await session.execute(select(Alert).where(Alert.rule_id == RULE))).scalars())


def baby(months: int = 10) -> dict[str, object]:
    return person(years_before(NOW, 0, days=months * 30))


@pytest.mark.parametrize(("days_apart", "expected"), [(29, 1), (30, 0), (31, 0)])
async def test_window_is_half_open(
    sessions: async_sessionmaker[AsyncSession], days_apart: int, expected: int
) -> None:
    """(T - 30 days, T]: an attendance exactly 30 days earlier is outside the window."""
    await register_orgs(sessions)
    child = baby()
    await Feeder(sessions).feed(
        [
            moved_in(child, years_before(NOW, 0, days=200)),
            ed_attendance(child, ["injury"], at=NOW - timedelta(days=days_apart)),
            ed_attendance(child, ["injury"], at=NOW),
        ]
    )
    assert len(await rule_alerts(sessions)) == expected


async def test_late_earlier_attendance_re_evaluates(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    child = baby()
    feeder = Feeder(sessions)
    await feeder.feed(
        [moved_in(child, years_before(NOW, 0, days=200)), ed_attendance(child, ["injury"], at=NOW)]
    )
    assert await rule_alerts(sessions) == []
    await feeder.feed([ed_attendance(child, ["injury"], at=NOW - timedelta(days=3))])
    [alert] = await rule_alerts(sessions)
    window = {c["id"]: c for c in alert.explanation["conditions"]}["repeat_injury"]
    assert len(window["events"]) == 2


async def test_two_year_old_and_other_reasons_do_not_count(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    toddler, infant = person(years_before(NOW, 2)), baby()
    since = years_before(NOW, 0, days=200)
    await Feeder(sessions).feed(
        [
            moved_in(toddler, since),
            moved_in(infant, since),
            ed_attendance(toddler, ["injury"], at=NOW - timedelta(days=5)),
            ed_attendance(toddler, ["injury"], at=NOW),
            ed_attendance(infant, ["other"], at=NOW - timedelta(days=5)),
            ed_attendance(infant, ["injury"], at=NOW),
        ]
    )
    assert await rule_alerts(sessions) == []
