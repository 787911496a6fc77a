"""Starter rule 2 (Operation Encompass) through the real pipeline and the HTTP API: one
alert per recipient, each cut down to what that recipient may see."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import (
    ADDRESS,
    NOW,
    OTHER_SCHOOL_URN,
    POLICE,
    SCHOOL_URN,
    Feeder,
    address,
    client_token,
    enrolment,
    event,
    moved_in,
    person,
    register_every_kind,
    register_police,
    years_before,
)

from lookout.alerts.models import Alert
from lookout.household.models import Household
from lookout.identity.models import PersonIdentifier

pytestmark = pytest.mark.asyncio

RULE = "domestic-abuse-children"


def incident(
    victim: dict[str, Any],
    present: list[dict[str, Any]],
    where: dict[str, str] = ADDRESS,
    at: Any = NOW,
) -> dict[str, Any]:
    return event(
        "police.domestic_abuse_incident",
        {
            "incident_ref": "CAD-0001",
            "address": where,
            "persons_involved": [{"person": victim, "role": "victim"}],
            "children_present": present,
        },
        source=POLICE,
        at=at,
    )


async def _setup(sessions: async_sessionmaker[AsyncSession]) -> None:
    await register_every_kind(sessions)
    await register_police(sessions)


async def _person_ids(
    sessions: async_sessionmaker[AsyncSession], *people: dict[str, Any]
) -> list[int]:
    async with sessions() as session:
        rows = await session.execute(
            select(PersonIdentifier.value, PersonIdentifier.person_id).where(
                PersonIdentifier.scheme == "nhs_number"
            )
        )
        found: dict[str, int] = dict(rows.all())
    return [found[p["nhs_number"]] for p in people]


def _person_ids_in(node: Any) -> set[int]:
    """Every person id anywhere in an API answer (``children`` lists, ``person_id`` fields)."""
    found: set[int] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "person_id" and isinstance(value, int):
                found.add(value)
            elif key == "children" and isinstance(value, list):
                found |= {c for c in value if isinstance(c, int)}
            found |= _person_ids_in(value)
    elif isinstance(node, list):
        for value in node:
            found |= _person_ids_in(value)
    return found


async def test_each_recipient_gets_its_own_minimised_alert(
    sessions: async_sessionmaker[AsyncSession], api_url: str
) -> None:
    await _setup(sessions)
    mother, partner = person(years_before(NOW, 34)), person(years_before(NOW, 36))
    leo, ava = person(years_before(NOW, 7)), person(years_before(NOW, 12))
    since = years_before(NOW, 2)
    await Feeder(sessions).feed(
        [
            moved_in(mother, since, at=NOW - timedelta(days=400)),
            moved_in(partner, since, at=NOW - timedelta(days=400)),
            moved_in(leo, since, at=NOW - timedelta(days=400)),
            enrolment(leo, since, urn=SCHOOL_URN, at=NOW - timedelta(days=400)),
            enrolment(ava, since, urn=OTHER_SCHOOL_URN, at=NOW - timedelta(days=400)),
            # Ava does not live here: the police name her as present.
            incident(mother, [ava], at=NOW - timedelta(hours=2)),
        ]
    )
    leo_id, ava_id = await _person_ids(sessions, leo, ava)
    async with sessions() as session:
        raised = {
            a.recipient_org_id: a
            for a in (await session.execute(select(Alert).where(Alert.rule_id == RULE))).scalars()
        }
    assert set(raised) == {"hackney-cs", "test-school", "other-school"}
    assert raised["hackney-cs"].children == sorted([leo_id, ava_id])
    assert raised["test-school"].children == [leo_id]
    assert raised["other-school"].children == [ava_id]
    assert raised["test-school"].summary.startswith("Operation Encompass")

    async with httpx.AsyncClient(base_url=api_url) as http:
        school = await client_token(http, sessions, "test-school")
        answer = await http.get(f"/v1/alerts/{raised['test-school'].id}", headers=school)
        assert answer.status_code == 200, answer.text
        seen = answer.json()
        assert seen["children"] == [leo_id]
        explanation = seen["explanation"]
        assert explanation["recipient"] == {
            "kind": "school",
            "carries": ["event_type", "event_date", "event_source"],
            "children": "own_pupils",
        }
        assert "household" not in explanation
        [trigger, condition] = explanation["conditions"]
        assert trigger["events"] == [
            {
                "source": POLICE,
                "type": "uk.lookout.police.domestic_abuse_incident.v1",
                "date": "2026-11-20",
            }
        ]
        assert "subject" not in trigger
        assert "named" not in trigger
        assert "members" not in condition
        assert explanation["children"] == [{"person_id": leo_id, "age": 7}]
        # Nothing about the other children or the adults anywhere in what the school reads.
        assert _person_ids_in(seen) == {leo_id}
        # Another recipient's alert is not the school's to read.
        refused = await http.get(f"/v1/alerts/{raised['hackney-cs'].id}", headers=school)
        assert refused.status_code == 404

        council = await client_token(http, sessions, "hackney-cs")
        full = (await http.get(f"/v1/alerts/{raised['hackney-cs'].id}", headers=council)).json()
        conditions = {c["id"]: c for c in full["explanation"]["conditions"]}
        assert {m["person_id"] for m in conditions["children_live_or_present"]["members"]} == {
            leo_id,
            ava_id,
        }
        named = {
            m["person_id"]: m.get("named_in_event_as")
            for m in conditions["children_live_or_present"]["members"]
        }
        assert named[ava_id] == "child_present"
        assert {n["role"] for n in conditions["trigger"]["named"]} == {"involved", "child_present"}
        assert full["explanation"]["household"]["members"] == 3


async def test_a_rule_that_alerts_schools_must_declare_what_they_see() -> None:
    from pathlib import Path

    import yaml

    from lookout.rules.model import RuleError, compile_rule
    from lookout.settings import PROJECT_ROOT

    content = yaml.safe_load((PROJECT_ROOT / "rules" / f"{RULE}.yaml").read_text())
    without = {k: v for k, v in content.items() if k != "minimisation"}
    with pytest.raises(RuleError, match=r"minimisation\.school"):
        compile_rule(without, path=Path("rules/x.yaml"))
    leaky = {
        **content,
        "minimisation": {
            "school": {"carries": ["event_type", "members"], "children": "own_pupils"}
        },
    }
    with pytest.raises(RuleError, match="may not see members"):
        compile_rule(leaky, path=Path("rules/x.yaml"))
    every_child = {
        **content,
        "minimisation": {"school": {"carries": ["event_type"], "children": "all"}},
    }
    with pytest.raises(RuleError, match="own_pupils"):
        compile_rule(every_child, path=Path("rules/x.yaml"))


async def test_a_school_not_registered_by_urn_is_reached_through_its_dsl(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The enrolment names the organisation of the school's designated safeguarding lead
    (``dsl_org_id``); with no organisation registered for the URN, that one receives it."""
    await _setup(sessions)
    mother, leo = person(years_before(NOW, 34)), person(years_before(NOW, 7))
    since = years_before(NOW, 2)
    await Feeder(sessions).feed(
        [
            moved_in(leo, since, at=NOW - timedelta(days=400)),
            enrolment(leo, since, urn="100777", dsl="other-school", at=NOW - timedelta(days=400)),
            incident(mother, [], at=NOW - timedelta(hours=2)),
        ]
    )
    async with sessions() as session:
        found = dict(
            (
                await session.execute(
                    select(Alert.recipient_key, Alert.recipient_org_id).where(Alert.rule_id == RULE)
                )
            ).all()
        )
    assert found == {"children_services:E09000012": "hackney-cs", "school:100777": "other-school"}


async def test_a_named_child_later_merged_is_evaluated_as_the_merged_person(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The police name a child by their own id only; a later event links that id to a
    child Lookout knows (with a school). When the incident is evaluated again, the child it
    names is the merged person, whose school is told."""
    await _setup(sessions)
    mother = person(years_before(NOW, 34))
    leo = person(years_before(NOW, 7))
    by_police = {"police_person_id": "MPS-C-1", "birth_date": leo["birth_date"]}
    feeder = Feeder(sessions)
    await feeder.feed(
        [
            moved_in(leo, years_before(NOW, 2), address(900), at=NOW - timedelta(days=400)),
            incident(mother, [by_police], at=NOW - timedelta(hours=3)),
        ]
    )
    linked = {**by_police, "nhs_number": leo["nhs_number"]}
    await feeder.feed(
        [
            enrolment(leo, years_before(NOW, 2), urn=SCHOOL_URN, at=NOW - timedelta(days=400)),
            incident(mother, [linked], address(901), at=NOW - timedelta(hours=2)),
        ]
    )
    # The mother's residence at the incident's address re-evaluates the first incident.
    await feeder.feed([moved_in(mother, years_before(NOW, 2), at=NOW - timedelta(days=400))])
    [leo_id] = await _person_ids(sessions, leo)
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Alert.children)
                .join(Household, Household.id == Alert.household_id)
                .where(
                    Alert.rule_id == RULE,
                    Alert.recipient_key == f"school:{SCHOOL_URN}",
                    Household.uprn == ADDRESS["uprn"],
                )
            )
        ).scalars()
        assert list(rows) == [[leo_id]]
