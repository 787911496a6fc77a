"""Who may read a household, and as of when: pure rules, unit-tested.

An organisation may read a household only as it was during the period of an alert it
holds about it. The period of an alert is simple on purpose:

    [trigger date - window, closure date (or today)]   (dates in Europe/London, inclusive)

where ``window`` is ``LOOKOUT_HOUSEHOLD_READ_WINDOW_DAYS`` (default 90 days: the longest
look-back of the starter rules, so the reader can see the household the rule saw). The
people who lived there before the window or after the closure are never visible: a
snapshot as of a date only holds the residences valid on that date.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from lookout.alerts.repository import HeldAlert


@dataclass(frozen=True, slots=True)
class Period:
    alert: HeldAlert
    start: date
    end: date

    def covers(self, on: date) -> bool:
        return self.start <= on <= self.end


def periods(
    alerts: Sequence[HeldAlert], *, window_days: int, today: date, tz: ZoneInfo
) -> list[Period]:
    """The readable period of each alert, newest trigger first."""
    found = []
    for alert in alerts:
        trigger = alert.trigger_time.astimezone(tz).date()
        end = alert.closed_at.astimezone(tz).date() if alert.closed_at else today
        found.append(Period(alert, trigger - timedelta(days=window_days), max(end, trigger)))
    return sorted(found, key=lambda p: (p.alert.trigger_time, str(p.alert.id)), reverse=True)


def default_as_of(found: Sequence[Period], tz: ZoneInfo) -> date:
    """With no ``as_of``, the household as it was on the newest alert's trigger date."""
    return found[0].alert.trigger_time.astimezone(tz).date()


def covering(found: Sequence[Period], on: date) -> list[Period]:
    return [p for p in found if p.covers(on)]
