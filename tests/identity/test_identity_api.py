"""/v1/identity: reviewers list, confirm and reject possible matches and undo merges."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import (
    NOW,
    TEST_ACTOR,
    Feeder,
    ed_attendance,
    moved_in,
    nhs_number,
    register_orgs,
    years_before,
)
from tests.household.test_read_api import auth

from lookout.alerts.models import Alert
from lookout.identity.models import IdentityMerge, Person
from lookout.orgs import service as orgs
from lookout.orgs.models import OrgKind
from lookout.settings import Settings

pytestmark = pytest.mark.asyncio


def sarah(**overrides: Any) -> dict[str, Any]:
    return {
        "given_name": "Sarah",
        "family_name": "Turner",
        "birth_date": years_before(NOW, 30).isoformat(),
        "postcode": "E8 1DY",
        **overrides,
    }


async def test_review_confirm_reject_and_unlink(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, api_url: str
) -> None:
    await register_orgs(sessions)
    async with sessions() as session, session.begin():
        await orgs.create_org(
            session, TEST_ACTOR, org_id="ops", name="Operators", kind=OrgKind.operator
        )
    child = {"nhs_number": nhs_number(), "birth_date": years_before(NOW, 4).isoformat()}
    feeder = Feeder(sessions)
    await feeder.feed(
        [
            moved_in({"nhs_number": nhs_number(), **sarah()}, years_before(NOW, 1)),
            moved_in(child, years_before(NOW, 1)),
        ]
    )
    # Two demographics-only ED attendances in the review band: an alcohol one ...
    await feeder.feed([ed_attendance(sarah(given_name="Sara", postcode="E8 2AB"))])
    await feeder.feed([ed_attendance(sarah(given_name="Emma"), ["injury"])])
    assert (await _all(sessions, Alert)) == []
    async with httpx.AsyncClient(base_url=api_url) as http:
        hackney = auth(settings, "hackney-cs", "children_services")
        path = "/v1/identity/possible-matches"
        assert (await http.get(path, headers=hackney)).status_code == 403
        settings.identity_reviewer_orgs = ["hackney-cs"]
        assert (await http.get(path, headers=hackney)).status_code == 200
        ops = auth(settings, "ops", "operator")
        listed = await http.get(path, headers=ops)
        assert listed.status_code == 200, listed.text
        first, second = listed.json()["items"]
        assert first["kind"] == "demographic"
        assert first["persons"][0]["given_name"] == "Sarah"
        assert first["persons"][0]["identifier_schemes"] == ["nhs_number"]
        confirmed = await http.post(f"{path}/{first['id']}/confirm", headers=ops)
        assert confirmed.status_code == 200, confirmed.text
        # The confirmed link re-evaluates the household: the alcohol attendance now alerts.
        assert confirmed.json()["alerts_raised"] == 1
        rejected = await http.post(f"{path}/{second['id']}/reject", headers=ops)
        assert rejected.json()["status"] == "rejected"
        again = await http.post(f"{path}/{second['id']}/confirm", headers=ops)
        assert again.status_code == 409
        survivor = confirmed.json()["survivor_id"]
        unlinked = await http.post(f"/v1/identity/persons/{survivor}/unlink", headers=ops)
        assert unlinked.status_code == 200, unlinked.text
        body = unlinked.json()
        assert body["restored_person_id"] == first["other_person_id"]
        assert body["moved_events"] == 1
        assert len(body["alerts_marked_for_review"]) == 1
        missing = await http.post(f"/v1/identity/persons/{survivor}/unlink", headers=ops)
        assert missing.status_code == 404
    [alert] = await _all(sessions, Alert)
    assert alert.review_reason is not None
    [merge] = await _all(sessions, IdentityMerge)
    assert merge.reason == "review_confirmed"
    assert merge.undone_at is not None
    restored = [p for p in await _all(sessions, Person) if p.id == first["other_person_id"]]
    assert restored[0].merged_into is None


async def _all(sessions: async_sessionmaker[AsyncSession], model: Any) -> list[Any]:
    async with sessions() as session:
        return list((await session.execute(select(model))).scalars())
