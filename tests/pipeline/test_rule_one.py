"""Starter rule 1 through the real pipeline on a real PostgreSQL (no broker needed)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import (
    ADDRESS,
    NOW,
    OTHER_LA,
    Feeder,
    ed_attendance,
    event,
    moved_in,
    moved_out,
    person,
    pipeline_config,
    register_orgs,
    years_before,
)

from lookout.alerts.models import Alert, AlertEvidence
from lookout.audit.models import AuditRecord

pytestmark = pytest.mark.asyncio


async def alerts(sessions: async_sessionmaker[AsyncSession]) -> list[Alert]:
    async with sessions() as session:
        return list((await session.execute(select(Alert).order_by(Alert.created_at))).scalars())


def family() -> tuple[dict[str, object], dict[str, object], dict[str, object]]:
    return (
        person(years_before(NOW, 34)),
        person(years_before(NOW, 7)),
        person(years_before(NOW, 4)),
    )


async def test_adult_alcohol_ed_with_children_raises_one_alert(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    mother, child1, child2 = family()
    since = years_before(NOW, 1)
    config = pipeline_config()
    [rule] = [r for r in config.rules if r.id == "adult-substance-misuse-ed"]
    labels = {"rule": rule.id, "version": rule.version[:12]}
    evaluations = REGISTRY.get_sample_value("lookout_rule_evaluations_total", labels) or 0
    result = await Feeder(sessions, config).feed(
        [
            moved_in(mother, since),
            moved_in(child1, since),
            moved_in(child2, since),
            ed_attendance(mother),
        ]
    )
    assert result.accepted == 4
    [alert] = await alerts(sessions)
    assert alert.rule_id == "adult-substance-misuse-ed"
    assert alert.recipient_org_id == "hackney-cs"
    assert len(alert.children) == 2
    conditions = {c["id"]: c for c in alert.explanation["conditions"]}
    assert conditions["trigger"]["subject"]["age"] == 34
    assert sorted(m["age"] for m in conditions["child_in_household"]["members"]) == [4, 7]
    # The ED attendance was evaluated once against this rule (residences do not trigger it).
    assert REGISTRY.get_sample_value("lookout_rule_evaluations_total", labels) == evaluations + 1


async def test_out_of_order_residence_re_evaluates(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The ED attendance arrives before anyone's residence; the later facts raise the alert."""
    await register_orgs(sessions)
    mother, child, _ = family()
    since = years_before(NOW, 1)
    feeder = Feeder(sessions)
    await feeder.feed([ed_attendance(mother)])
    await feeder.feed([moved_in(child, since)])
    assert await alerts(sessions) == []
    await feeder.feed([moved_in(mother, since)])
    [alert] = await alerts(sessions)
    assert alert.recipient_org_id == "hackney-cs"


@pytest.mark.parametrize(
    ("child_years", "child_days", "expected"), [(17, 0, 1), (18, 0, 0), (18, -1, 1)]
)
async def test_child_age_boundary(
    sessions: async_sessionmaker[AsyncSession], child_years: int, child_days: int, expected: int
) -> None:
    """Under 18 on the event's date (Europe/London): 18 today is an adult;
    18 tomorrow is still a child."""
    await register_orgs(sessions)
    mother = person(years_before(NOW, 40))
    young = person(years_before(NOW, child_years, days=child_days))
    since = years_before(NOW, 1)
    await Feeder(sessions).feed(
        [moved_in(mother, since), moved_in(young, since), ed_attendance(mother)]
    )
    assert len(await alerts(sessions)) == expected


async def test_child_who_moved_out_before_the_event_does_not_count(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    mother, child, _ = family()
    since = years_before(NOW, 1)
    await Feeder(sessions).feed(
        [
            moved_in(mother, since),
            moved_in(child, since),
            moved_out(child, (NOW - timedelta(days=3)).date()),
            ed_attendance(mother),
        ]
    )
    assert await alerts(sessions) == []


async def test_subject_who_is_a_minor_or_of_unknown_age_does_not_trigger(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    teen = person(years_before(NOW, 16))
    unknown = person()
    child = person(years_before(NOW, 3))
    since = years_before(NOW, 1)
    await Feeder(sessions).feed(
        [
            moved_in(teen, since),
            moved_in(unknown, since),
            moved_in(child, since),
            ed_attendance(teen),
            ed_attendance(unknown),
        ]
    )
    assert await alerts(sessions) == []


async def test_member_of_unknown_age_counts_as_possible_child(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    mother, unknown = person(years_before(NOW, 30)), person()
    since = years_before(NOW, 1)
    await Feeder(sessions).feed(
        [moved_in(mother, since), moved_in(unknown, since), ed_attendance(mother)]
    )
    [alert] = await alerts(sessions)
    [member] = {c["id"]: c for c in alert.explanation["conditions"]}["child_in_household"][
        "members"
    ]
    assert member["age"] is None
    assert "possible child" in member["note"]


async def test_other_reasons_and_adult_only_households_raise_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    mother, child, _ = family()
    lodger = person(years_before(NOW, 50))
    other_address = {"uprn": "100023336957", "la_code": ADDRESS["la_code"]}
    since = years_before(NOW, 1)
    await Feeder(sessions).feed(
        [
            moved_in(mother, since),
            moved_in(child, since),
            moved_in(lodger, since, other_address),
            ed_attendance(mother, ["injury"]),
            ed_attendance(lodger, ["substance"]),
        ]
    )
    assert await alerts(sessions) == []


async def test_open_alert_absorbs_later_matches_as_evidence(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    mother, child, _ = family()
    since = years_before(NOW, 1)
    feeder = Feeder(sessions)
    await feeder.feed(
        [
            moved_in(mother, since),
            moved_in(child, since),
            ed_attendance(mother, at=NOW - timedelta(days=2)),
        ]
    )
    await feeder.feed([ed_attendance(mother, ["substance"])])
    [alert] = await alerts(sessions)
    async with sessions() as session:
        roles = sorted(
            (
                await session.execute(
                    select(AlertEvidence.role).where(AlertEvidence.alert_id == alert.id)
                )
            ).scalars()
        )
    assert roles == ["match", "trigger"]


async def test_no_children_services_registered_keeps_alert_as_undeliverable(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions, children_services=False)
    mother, child, _ = family()
    since = years_before(NOW, 1)
    await Feeder(sessions).feed(
        [moved_in(mother, since), moved_in(child, since), ed_attendance(mother)]
    )
    [alert] = await alerts(sessions)
    assert alert.recipient_org_id is None
    assert alert.recipient_key == f"children_services:{ADDRESS['la_code']}"
    async with sessions() as session:
        outcome = (
            await session.execute(
                select(AuditRecord.outcome).where(AuditRecord.action == "worker:alert:raised")
            )
        ).scalar_one()
    assert outcome == "undeliverable"


async def test_alert_goes_to_the_households_own_local_authority(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    mother, child, _ = family()
    barking = {"uprn": "200000000001", "la_code": OTHER_LA}
    since = years_before(NOW, 1)
    await Feeder(sessions).feed(
        [moved_in(mother, since, barking), moved_in(child, since, barking), ed_attendance(mother)]
    )
    [alert] = await alerts(sessions)
    assert alert.recipient_org_id == "barking-cs"


async def test_events_older_than_the_horizon_are_history_only(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    mother, child, _ = family()
    since = years_before(NOW, 2)
    await Feeder(sessions).feed(
        [
            moved_in(mother, since),
            moved_in(child, since),
            ed_attendance(mother, at=NOW - timedelta(days=31)),
        ]
    )
    assert await alerts(sessions) == []


async def test_retraction_marks_the_alert_for_review_and_keeps_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    mother, child, _ = family()
    since = years_before(NOW, 1)
    feeder = Feeder(sessions)
    ed = ed_attendance(mother)
    await feeder.feed([moved_in(mother, since), moved_in(child, since), ed])
    retraction = event(
        "event.retraction",
        {"retracted_event_id": ed["id"], "reason": "entered_in_error"},
        source=ed["source"],
    )
    await feeder.feed([retraction])
    [alert] = await alerts(sessions)
    assert alert.review_reason is not None
    assert "retracted" in alert.review_reason


def _consumed(type_: str, outcome: str) -> float:
    """lookout_events_consumed_total of an event type and outcome, over all sources."""
    labels = {"type": f"uk.lookout.{type_}.v1", "outcome": outcome}
    return sum(
        s.value
        for m in REGISTRY.collect()
        if m.name == "lookout_events_consumed"
        for s in m.samples
        if s.name.endswith("_total") and labels.items() <= s.labels.items()
    )


async def test_replaying_the_same_events_changes_nothing_and_counts_duplicates(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    mother, child, _ = family()
    since = years_before(NOW, 1)
    events = [moved_in(mother, since), moved_in(child, since), ed_attendance(mother)]
    kinds = [
        (t, o)
        for t in ("person.residence", "health.ed_attendance")
        for o in ("accepted", "duplicate")
    ]
    before = {kind: _consumed(*kind) for kind in kinds}
    feeder = Feeder(sessions)
    await feeder.feed(events)
    again = await feeder.feed(events)
    assert (again.accepted, again.duplicates, again.rejections) == (0, 3, [])
    # The metric counts each message once, by type, source and outcome.
    assert {kind: _consumed(*kind) - before[kind] for kind in kinds} == {
        ("person.residence", "accepted"): 2,
        ("person.residence", "duplicate"): 2,
        ("health.ed_attendance", "accepted"): 1,
        ("health.ed_attendance", "duplicate"): 1,
    }
    assert len(await alerts(sessions)) == 1
    async with sessions() as session:
        raised = (
            await session.execute(
                select(func.count()).where(AuditRecord.action == "worker:alert:raised")
            )
        ).scalar_one()
    assert raised == 1


async def test_a_worker_that_lost_its_partition_cannot_commit(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The offset write is a compare-and-set: if another worker moved the stored offset,
    the whole batch (events, alerts, audit) rolls back."""
    from lookout.pipeline import Fenced

    await register_orgs(sessions)
    mother, child, _ = family()
    since = years_before(NOW, 1)
    ours, theirs = Feeder(sessions), Feeder(sessions)
    await ours.feed([moved_in(mother, since)])
    # The partition moves to another worker, which seeks to the stored offset and commits.
    theirs.offsets, theirs.positions = dict(ours.offsets), dict(ours.positions)
    await theirs.feed([moved_in(child, since)])
    with pytest.raises(Fenced):
        await ours.feed([moved_in(child, since), ed_attendance(mother)])
    assert await alerts(sessions) == []
    async with sessions() as session:
        events = (
            await session.execute(
                select(func.count())
                .select_from(AuditRecord)
                .where(AuditRecord.action == "worker:event:accepted")
            )
        ).scalar_one()
    assert events == 2  # ours' first batch and theirs; not the fenced one


async def test_a_child_found_later_is_added_to_the_open_alert(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The second child's residence arrives after the alert was raised: the alert names
    both children, as it would had the events come in the other order."""
    await register_orgs(sessions)
    mother, child1, child2 = family()
    since = years_before(NOW, 1)
    feeder = Feeder(sessions)
    await feeder.feed([moved_in(mother, since), moved_in(child1, since), ed_attendance(mother)])
    [first] = await alerts(sessions)
    await feeder.feed([moved_in(child2, since)])
    [alert] = await alerts(sessions)
    assert alert.id == first.id
    assert len(alert.children) == 2
    assert len(first.children) == 1
    members = {c["id"]: c for c in alert.explanation["conditions"]}["child_in_household"]["members"]
    assert len(members) == 2
