"""GET /v1/households/{id} and /v1/persons/{id}: only during an alert's period, only the
caller's part, every read audited."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import (
    NOW,
    TEST_ACTOR,
    Feeder,
    ed_attendance,
    enrolment,
    moved_in,
    moved_out,
    person,
    register_orgs,
    years_before,
)

from lookout.alerts.models import Alert
from lookout.audit.models import AuditRecord
from lookout.ingest.models import Event
from lookout.orgs import service as orgs
from lookout.orgs.models import OrgKind
from lookout.orgs.security import Principal, issue_token
from lookout.settings import Settings

pytestmark = pytest.mark.asyncio
HEADERS = {"X-Lookout-End-User": "sw-42", "X-Lookout-Purpose": "case_work"}


def auth(settings: Settings, org_id: str, kind: str) -> dict[str, str]:
    token = issue_token(
        Principal(f"{org_id}-client", org_id, kind),
        settings.token_secret.get_secret_value(),
        timedelta(minutes=5),
    )
    return {"Authorization": f"Bearer {token}", **HEADERS}


async def scenario(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """Mother and child at one address with an alert; a lodger who left two years ago."""
    await register_orgs(sessions)
    async with sessions() as session, session.begin():
        await orgs.create_org(
            session,
            TEST_ACTOR,
            org_id="test-school",
            name="School",
            kind=OrgKind.school,
            school_urn="100241",
        )
    mother = person(years_before(NOW, 34), given_name="Sarah", family_name="Turner")
    child = person(years_before(NOW, 7), given_name="Leo", family_name="Turner")
    lodger = person(years_before(NOW, 50), given_name="Old", family_name="Lodger")
    events = [
        moved_in(lodger, years_before(NOW, 5)),
        moved_out(lodger, years_before(NOW, 2)),
        moved_in(mother, years_before(NOW, 1)),
        moved_in(child, years_before(NOW, 1)),
        enrolment(child, years_before(NOW, 1)),
        ed_attendance(mother),
    ]
    await Feeder(sessions).feed(events)
    async with sessions() as session:
        ids = {
            e: int(p or 0)
            for e, p in (await session.execute(select(Event.event_id, Event.subject_person_id)))
        }
        [alert] = (await session.execute(select(Alert))).scalars().all()
    return {
        "household": alert.household_id,
        "mother": ids[events[2]["id"]],
        "child": ids[events[3]["id"]],
        "lodger": ids[events[0]["id"]],
    }


async def test_household_read_during_the_alert_period(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, api_url: str
) -> None:
    ids = await scenario(sessions)
    path = f"/v1/households/{ids['household']}"
    async with httpx.AsyncClient(base_url=api_url) as http:
        own = auth(settings, "hackney-cs", "children_services")
        response = await http.get(path, headers=own)
        assert response.status_code == 200, response.text
        body = response.json()
        members = {m["person_id"]: m for m in body["members"]}
        assert set(members) == {ids["mother"], ids["child"]}  # never the earlier lodger
        assert members[ids["child"]]["role"] == "child"
        assert members[ids["child"]]["school_urn"] == "100241"
        assert members[ids["child"]]["relationships"] == []
        assert members[ids["mother"]]["given_name"] == "Sarah"
        assert body["partial"] is False
        # Before the period (when the lodger lived there): refused.
        early = (NOW - timedelta(days=400)).date().isoformat()
        assert (await http.get(path, params={"as_of": early}, headers=own)).status_code == 403
        # Another LA's team holds no alert about it: it does not exist for them.
        other = auth(settings, "barking-cs", "children_services")
        assert (await http.get(path, headers=other)).status_code == 404
        # Without an end user and purpose: refused.
        bare = {"Authorization": own["Authorization"]}
        assert (await http.get(path, headers=bare)).status_code == 400
        # The person read follows the same rule.
        person_path = f"/v1/persons/{ids['child']}"
        child = await http.get(person_path, headers=own)
        assert child.status_code == 200, child.text
        assert child.json()["household_ids"] == [ids["household"]]
        assert (await http.get(f"/v1/persons/{ids['lodger']}", headers=own)).status_code == 403
        assert (await http.get(person_path, headers=other)).status_code == 404
    async with sessions() as session:
        actions = list(
            (
                await session.execute(
                    select(AuditRecord.action).where(AuditRecord.end_user == "sw-42")
                )
            ).scalars()
        )
    assert actions.count("api:household:read") == 1
    assert actions.count("api:person:read") == 1
    assert actions.count("api:request:denied") >= 4


async def test_a_school_sees_only_its_pupils(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, api_url: str
) -> None:
    ids = await scenario(sessions)
    async with sessions() as session, session.begin():
        await session.execute(update(Alert).values(recipient_org_id="test-school"))
    async with httpx.AsyncClient(base_url=api_url) as http:
        school = auth(settings, "test-school", "school")
        response = await http.get(f"/v1/households/{ids['household']}", headers=school)
        assert response.status_code == 200, response.text
        body = response.json()
        assert [m["person_id"] for m in body["members"]] == [ids["child"]]
        assert body["partial"] is True
        mother = await http.get(f"/v1/persons/{ids['mother']}", headers=school)
        assert mother.status_code == 404
