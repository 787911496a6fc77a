"""The readable period of an alert: [trigger date - window, closure or today]."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from lookout.alerts.repository import HeldAlert
from lookout.household import access

LONDON = ZoneInfo("Europe/London")


def alert(trigger: datetime, closed: datetime | None = None) -> HeldAlert:
    return HeldAlert(uuid.uuid4(), 1, trigger, closed)


def test_open_alert_runs_to_today_and_closed_alert_to_its_closure() -> None:
    today = date(2026, 11, 25)
    open_one = alert(datetime(2026, 11, 20, 23, 30, tzinfo=UTC))  # GMT: still 20 November
    closed = alert(datetime(2026, 6, 30, 23, 30, tzinfo=UTC), datetime(2026, 7, 10, 9, tzinfo=UTC))
    newest, older = access.periods([closed, open_one], window_days=90, today=today, tz=LONDON)
    assert newest.alert is open_one
    assert (newest.start, newest.end) == (date(2026, 8, 22), today)
    # 23:30 UTC on 30 June is 00:30 on 1 July in London (BST): the trigger date is local.
    assert (older.start, older.end) == (date(2026, 4, 2), date(2026, 7, 10))
    assert access.default_as_of([newest, older], LONDON) == date(2026, 11, 20)
    assert access.covering([newest, older], date(2026, 7, 11)) == []
    assert access.covering([newest, older], date(2026, 7, 10)) == [older]
    assert access.covering([newest, older], date(2026, 8, 22)) == [newest]
