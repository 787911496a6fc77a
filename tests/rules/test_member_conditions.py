"""Household member conditions on the date joined and the relationship to the subject
("an adult who joined in the last 28 days", "the subject's partner"): the pure evaluator,
the replay engine (the oracle) and the real pipeline agree, in any arrival order."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
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
    pipeline_config,
    register_orgs,
    relationship,
    years_before,
)

from lookout.alerts.models import Alert
from lookout.household.snapshot import HouseholdSnapshot, Member, RelationshipFact
from lookout.rules.evaluator import TriggerEvent, evaluate
from lookout.rules.model import Rule, compile_rule
from lookout.rules.replay import replay

RULE: Rule = compile_rule(
    {
        "id": "new-partner-alcohol",
        "title": "Alcohol attendance with a new partner at home",
        "description": "An adult attends for alcohol; their partner moved in within 28 days.",
        "owner": "tests",
        "review_date": "2027-01-01",
        "severity": "medium",
        "trigger": {
            "types": ["uk.lookout.health.ed_attendance.v1"],
            "description": "An alcohol attendance of an adult",
            "subject": {"age_at_least": 18},
            "condition": '"alcohol" in data.presenting_reasons',
        },
        "household": [
            {
                "id": "new_partner",
                "description": "The subject's partner joined within 28 days",
                "member": {
                    "age_at_least": 18,
                    "joined_within_days": 28,
                    "relationship_to_subject": ["partner"],
                },
            }
        ],
        "recipients": ["children_services"],
        "summary": "x",
        "lawful_basis": "x",
    }
)
ON = date(2026, 11, 20)


def _trigger() -> TriggerEvent:
    return TriggerEvent(
        1,
        "urn:x",
        "e1",
        RULE.spec.trigger.types[0],
        NOW,
        {"presenting_reasons": ["alcohol"]},
        1,
        30,
    )


@pytest.mark.parametrize(
    ("joined", "kind", "fires"),
    [
        (ON - timedelta(days=27), "partner", True),
        (ON, "partner", True),
        (ON - timedelta(days=28), "partner", False),  # (T - 28 days, T]: day 28 is outside
        (ON - timedelta(days=3), "parent", False),
        (None, "partner", False),  # joined on an unknown date: not known to be new
    ],
)
def test_evaluator(joined: date | None, kind: str, fires: bool) -> None:
    household = HouseholdSnapshot(
        9,
        "100023336956",
        "E09000012",
        ON,
        (Member(1, 30, date(2020, 1, 1)), Member(2, 31, joined)),
        (RelationshipFact(2, 1, kind, None),),
    )
    found = evaluate([RULE], _trigger(), household)
    assert bool(found) is fires
    if fires:
        [member] = found[0].explanation["conditions"][1]["members"]
        assert member["relationship_to_subject"] == [kind]


def _scenario(joined_days_ago: int, kind: str) -> list[dict[str, Any]]:
    subject, other = person(years_before(NOW, 30)), person(years_before(NOW, 32))
    return [
        moved_in(subject, years_before(NOW, 2), at=NOW - timedelta(days=700)),
        moved_in(
            other,
            (NOW - timedelta(days=joined_days_ago)).date(),
            at=NOW - timedelta(days=joined_days_ago),
        ),
        relationship(other, subject, kind, at=NOW - timedelta(days=joined_days_ago)),
        ed_attendance(subject, at=NOW - timedelta(hours=1)),
        # A residence elsewhere for nobody in particular, so batches differ in shape.
        event(
            "person.residence",
            {
                "person": person(),
                "address": {"uprn": "100000000001", "la_code": "E09000012"},
                "change": "moved_in",
                "date": "2026-01-01",
            },
        ),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("joined_days_ago", "kind", "fires"),
    [(10, "partner", True), (40, "partner", False), (10, "carer", False)],
)
@pytest.mark.parametrize(
    "order", ["as written", "reversed, one per batch", "the relationship last, on its own"]
)
async def test_replay_and_pipeline_agree(
    sessions: async_sessionmaker[AsyncSession],
    joined_days_ago: int,
    kind: str,
    fires: bool,
    order: str,
) -> None:
    events = _scenario(joined_days_ago, kind)
    assert bool(replay(events, [RULE], now=NOW)) is fires
    await register_orgs(sessions)
    feeder = Feeder(sessions, dataclasses.replace(pipeline_config(), rules=[RULE]))
    if order == "as written":
        await feeder.feed(events)
    elif order == "the relationship last, on its own":
        await feeder.feed(events[:2] + events[3:])
        await feeder.feed(events[2:3])
    else:
        for e in reversed(events):
            await feeder.feed([e])
    async with sessions() as session:
        raised = (
            await session.execute(select(Alert.id).where(Alert.review_reason.is_(None)))
        ).all()
    assert bool(raised) is fires
