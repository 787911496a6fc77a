"""History windows count events recorded at the household's address (a police incident
names no subject), and such an event arriving late re-evaluates the later trigger events
of that household — including trigger events that are themselves recorded at the address."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import (
    NOW,
    Feeder,
    domestic_abuse_incident,
    person,
    pipeline_config,
    register_orgs,
    register_police,
    years_before,
)

from lookout.alerts.models import Alert
from lookout.rules.model import Rule, compile_rule
from lookout.rules.replay import replay

DA = "uk.lookout.police.domestic_abuse_incident.v1"
RULE: Rule = compile_rule(
    {
        "id": "repeat-incidents",
        "title": "Repeat police incidents at one address",
        "description": "A second domestic abuse incident at an address within 90 days.",
        "owner": "tests",
        "review_date": "2027-01-01",
        "severity": "high",
        "trigger": {"types": [DA], "description": "A police incident at the address"},
        "history": [
            {
                "id": "repeat",
                "description": "Two or more incidents at the address within 90 days",
                "types": [DA],
                "within_days": 90,
                "count_at_least": 2,
            }
        ],
        "recipients": ["children_services"],
        "summary": "x",
        "lawful_basis": "x",
    }
)


def _incidents(first_days_ago: int) -> list[dict[str, Any]]:
    adult = person(years_before(NOW, 40))
    return [
        domestic_abuse_incident([adult], at=NOW - timedelta(days=first_days_ago)),
        domestic_abuse_incident([adult], at=NOW - timedelta(hours=1)),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize(("first_days_ago", "fires"), [(60, True), (95, False)])
@pytest.mark.parametrize("order", ["in time order", "the earlier incident last"])
async def test_incidents_at_the_address_count_in_any_order(
    sessions: async_sessionmaker[AsyncSession], first_days_ago: int, fires: bool, order: str
) -> None:
    events = _incidents(first_days_ago)
    assert bool(replay(events, [RULE], now=NOW)) is fires
    await register_orgs(sessions)
    await register_police(sessions)
    feeder = Feeder(sessions, dataclasses.replace(pipeline_config(), rules=[RULE]))
    for e in events if order == "in time order" else reversed(events):
        await feeder.feed([e])
    async with sessions() as session:
        raised = (await session.execute(select(Alert.id))).all()
    assert len(raised) == (1 if fires else 0)
