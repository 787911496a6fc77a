"""What ``alerts.apply`` does with each match, decided in Python for the whole batch
(:func:`lookout.alerts.service.plan`), and the one case it must hand back to the database:
another writer opened the same (rule, household, recipient) first."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import (
    NOW,
    Feeder,
    ed_attendance,
    moved_in,
    person,
    pipeline_config,
    register_orgs,
    years_before,
)

from lookout.alerts import repository
from lookout.alerts import service as alerts
from lookout.alerts.models import Alert, AlertEvidence
from lookout.audit.actions import Action
from lookout.audit.service import Entry
from lookout.ingest.models import Event
from lookout.rules.evaluator import Candidate, TriggerEvent
from lookout.rules.model import Rule

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
KEY = "children_services:E09000012"


def rule(rule_id: str = "adult-substance-misuse-ed") -> Rule:
    [found] = [r for r in pipeline_config().rules if r.id == rule_id]
    return found


def trigger(pk: int, at: datetime) -> TriggerEvent:
    return TriggerEvent(pk, "urn:test", f"e{pk}", "t", at, {}, 1, 30)


def candidate(r: Rule, children: tuple[int, ...], note: str, household: int = 7) -> Candidate:
    return Candidate(r, household, KEY, children, {"note": note})


def ids() -> Any:
    counter = itertools.count(1)
    return lambda: uuid.UUID(int=next(counter))


def test_first_match_raises_and_later_matches_of_the_key_are_its_evidence() -> None:
    r = rule()
    late = (trigger(2, T0 + timedelta(hours=1)), candidate(r, (11, 12), "second"))
    early = (trigger(1, T0), candidate(r, (11,), "first"))
    steps = alerts.plan([late, early], {}, {}, {KEY: "cs"}, new_id=ids())
    assert [(s.raises, s.event.event_pk) for s in steps] == [(True, 1), (False, 2)]
    target = steps[0].target
    assert steps[1].target is target
    assert target.values is not None
    # The later match named a new child: the insert carries both, with its explanation.
    assert target.values["children"] == [11, 12]
    assert target.values["explanation"] == {"note": "second"}
    assert target.values["trigger_event_id"] == 1
    assert target.values["recipient_org_id"] == "cs"


def test_a_later_match_naming_no_new_child_keeps_the_explanation() -> None:
    r = rule()
    steps = alerts.plan(
        [
            (trigger(1, T0), candidate(r, (11, 12), "first")),
            (trigger(2, T0 + timedelta(hours=1)), candidate(r, (12,), "second")),
        ],
        {},
        {},
        {},
        new_id=ids(),
    )
    values = steps[0].target.values
    assert values is not None
    assert values["children"] == [11, 12]
    assert values["explanation"] == {"note": "first"}
    assert values["recipient_org_id"] is None  # no registered recipient: undeliverable


def test_an_open_alert_absorbs_matches_and_gains_only_new_children() -> None:
    r = rule()
    open_id = uuid.uuid4()
    found = {(r.id, 7, KEY): repository.OpenAlert(open_id, frozenset({11}))}
    same = alerts.plan([(trigger(1, T0), candidate(r, (11,), "same"))], found, {}, {})
    assert [(s.raises, s.target.id) for s in same] == [(False, open_id)]
    assert same[0].target.explanation is None  # nothing to update

    more = alerts.plan(
        [
            (trigger(1, T0), candidate(r, (11, 13), "adds 13")),
            (trigger(2, T0 + timedelta(hours=1)), candidate(r, (11,), "adds nothing")),
        ],
        found,
        {},
        {},
    )
    target = more[0].target
    assert [s.raises for s in more] == [False, False]
    assert target.children == {11, 13}
    assert target.explanation == {"note": "adds 13"}


def test_closed_alerts_suppress_their_own_events_and_matches_within_the_cool_down() -> None:
    r = rule()
    cooldown = timedelta(days=r.spec.cooldown_days)
    key = (r.id, 7, KEY)
    match = (trigger(5, T0), candidate(r, (11,), "m"))

    holds_it = {key: repository.ClosedAlerts(T0 - cooldown - timedelta(days=1), frozenset({5}))}
    assert alerts.plan([match], {}, holds_it, {}) == []

    recent = {key: repository.ClosedAlerts(T0 - cooldown + timedelta(hours=1), frozenset())}
    assert alerts.plan([match], {}, recent, {}) == []

    long_ago = {key: repository.ClosedAlerts(T0 - cooldown - timedelta(hours=1), frozenset())}
    assert [s.raises for s in alerts.plan([match], {}, long_ago, {})] == [True]


def test_a_suppressed_match_does_not_stop_a_later_one_outside_the_cool_down() -> None:
    r = rule()
    cooldown = timedelta(days=r.spec.cooldown_days)
    closed = {(r.id, 7, KEY): repository.ClosedAlerts(T0, frozenset())}
    steps = alerts.plan(
        [
            (trigger(1, T0 + cooldown - timedelta(hours=1)), candidate(r, (11,), "inside")),
            (trigger(2, T0 + cooldown + timedelta(hours=1)), candidate(r, (11,), "outside")),
            (trigger(3, T0 + cooldown + timedelta(hours=2)), candidate(r, (11,), "absorbed")),
        ],
        {},
        closed,
        {},
        new_id=ids(),
    )
    assert [(s.raises, s.event.event_pk) for s in steps] == [(True, 2), (False, 3)]


def test_keys_are_independent() -> None:
    r, other = rule(), rule("domestic-abuse-children")
    steps = alerts.plan(
        [
            (trigger(1, T0), candidate(r, (11,), "a", household=7)),
            (trigger(1, T0), candidate(r, (11,), "b", household=8)),
            (trigger(1, T0), candidate(other, (11,), "c", household=7)),
        ],
        {},
        {},
        {},
        new_id=ids(),
    )
    assert [s.raises for s in steps] == [True, True, True]
    assert len({s.target.id for s in steps}) == 3


@pytest.mark.asyncio
async def test_a_key_another_writer_opened_first_takes_the_match_as_evidence(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's read found no open alert, but another writer's insert won: the match
    is evidence on that alert (with the children it names), and nothing is raised."""
    await register_orgs(sessions)
    adult, child = person(years_before(NOW, 34)), person(years_before(NOW, 7))
    since = years_before(NOW, 1)
    config = pipeline_config()
    await Feeder(sessions, config).feed(
        [moved_in(adult, since), moved_in(child, since), ed_attendance(adult)]
    )
    async with sessions() as session, session.begin():
        [existing] = (await session.execute(select(Alert))).scalars().all()
        later = await session.scalar(
            select(Event.id).where(Event.id != existing.trigger_event_id).order_by(Event.id)
        )
        assert later is not None
        r = rule(existing.rule_id)
        match = (
            trigger(later, existing.trigger_time + timedelta(hours=1)),
            Candidate(r, existing.household_id, existing.recipient_key, (999_999,), {"n": 2}),
        )
        real = repository.open_alerts
        calls = 0

        async def stale_first_read(s: AsyncSession, keys: Any) -> Any:
            nonlocal calls
            calls += 1
            return {} if calls == 1 else await real(s, keys)

        monkeypatch.setattr(repository, "open_alerts", stale_first_read)
        audit: list[Entry] = []
        raised = await alerts.apply(session, [match], audit)
        assert raised == []
        assert calls == 2
        assert [e.action for e in audit] == [Action.alert_evidence_added]
        rows = (
            await session.execute(
                select(AlertEvidence.event_id, AlertEvidence.role).where(
                    AlertEvidence.alert_id == existing.id
                )
            )
        ).all()
        assert (later, "match") in {tuple(row) for row in rows}
        await session.refresh(existing)
        assert 999_999 in existing.children
        assert existing.explanation == {"n": 2}
        assert await session.scalar(select(Alert.id).where(Alert.id != existing.id)) is None
