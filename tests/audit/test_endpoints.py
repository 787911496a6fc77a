"""``/v1/audit`` through the real API: auditors only, filters and cursor, the person access
report (JSON and CSV), and verification."""

from __future__ import annotations

import csv
import io

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.e2e.test_publish_to_alert import HEADERS, token
from tests.factories import (
    NOW,
    TEST_ACTOR,
    Feeder,
    ed_attendance,
    moved_in,
    person,
    register_auditor,
    register_orgs,
    seal,
    years_before,
)

from lookout.alerts.models import Alert
from lookout.audit.models import AuditRecord
from lookout.orgs import service
from lookout.settings import Settings

pytestmark = pytest.mark.asyncio
AUDIT_HEADERS = {"X-Lookout-End-User": "ig-lead-7", "X-Lookout-Purpose": "audit_review"}


async def clients(
    sessions: async_sessionmaker[AsyncSession],
) -> tuple[tuple[str, str], tuple[str, str]]:
    await register_orgs(sessions)
    auditor = await register_auditor(sessions)
    async with sessions() as session, session.begin():
        hackney = await service.create_client(session, TEST_ACTOR, "hackney-cs")
    return auditor, hackney


async def bearer(
    http: httpx.AsyncClient, client: tuple[str, str], extra: dict[str, str]
) -> dict[str, str]:
    return {"Authorization": f"Bearer {await token(http, *client)}", **extra}


async def raise_alert(sessions: async_sessionmaker[AsyncSession]) -> Alert:
    mother, child = person(years_before(NOW, 30)), person(years_before(NOW, 3))
    since = years_before(NOW, 1)
    await Feeder(sessions).feed(
        [moved_in(mother, since), moved_in(child, since), ed_attendance(mother)]
    )
    async with sessions() as session:
        return (await session.execute(select(Alert))).scalar_one()


async def test_auditors_page_through_the_filtered_trail_and_are_audited(
    sessions: async_sessionmaker[AsyncSession], api_url: str
) -> None:
    auditor, hackney = await clients(sessions)
    async with httpx.AsyncClient(base_url=api_url) as http:
        for _ in range(3):
            await token(http, *hackney)
        own = await bearer(http, auditor, AUDIT_HEADERS)
        seqs: list[int] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"action": "api:token:issued", "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = await http.get("/v1/audit", params=params, headers=own)
            assert page.status_code == 200, page.text
            body = page.json()
            assert all(i["action"] == "api:token:issued" for i in body["items"])
            seqs += [i["seq"] for i in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert len(seqs) == 4  # three for hackney, one for the auditor itself
        assert seqs == sorted(set(seqs))
        by_org = await http.get(
            "/v1/audit", params={"actor_org": "hackney-cs", "since": NOW.isoformat()}, headers=own
        )
        assert by_org.status_code == 200
        assert (await http.get("/v1/audit?cursor=nope", headers=own)).status_code == 400
        no_purpose = {"Authorization": own["Authorization"]}
        assert (await http.get("/v1/audit", headers=no_purpose)).status_code == 400

    async with sessions() as session:
        listed = list(
            (
                await session.execute(
                    select(AuditRecord)
                    .where(AuditRecord.action == "api:audit:listed")
                    .order_by(AuditRecord.seq)
                )
            ).scalars()
        )
    assert len(listed) >= 3
    assert {r.end_user for r in listed} == {"ig-lead-7"}
    assert {r.purpose for r in listed} == {"audit_review"}
    assert listed[0].details["filters"] == {"action": "api:token:issued"}


async def test_other_kinds_are_refused_and_the_refusal_is_audited(
    sessions: async_sessionmaker[AsyncSession], api_url: str
) -> None:
    _, hackney = await clients(sessions)
    async with httpx.AsyncClient(base_url=api_url) as http:
        headers = await bearer(http, hackney, HEADERS)
        for path in ("/v1/audit", "/v1/audit/persons/1/access", "/v1/audit/verify"):
            answer = await http.get(path, headers=headers)
            assert answer.status_code == 403, path
            assert answer.headers["content-type"].startswith("application/problem+json")
        assert (await http.get("/v1/audit", headers=HEADERS)).status_code == 401
    async with sessions() as session:
        denied = list(
            (
                await session.execute(
                    select(AuditRecord)
                    .where(AuditRecord.action == "api:request:denied")
                    .order_by(AuditRecord.seq)
                )
            ).scalars()
        )
    assert len(denied) == 3
    assert all(d.actor_org_id == "hackney-cs" and d.outcome == "forbidden" for d in denied)
    assert denied[0].details == {"reason": "kind_lacks_permission", "kind": "children_services"}


async def test_who_has_seen_this_childs_information(
    sessions: async_sessionmaker[AsyncSession], api_url: str
) -> None:
    auditor, hackney = await clients(sessions)
    alert = await raise_alert(sessions)
    [child] = alert.children
    async with httpx.AsyncClient(base_url=api_url) as http:
        social_worker = await bearer(http, hackney, HEADERS)
        assert (await http.get("/v1/alerts", headers=social_worker)).status_code == 200
        read = await http.get(f"/v1/alerts/{alert.id}", headers=social_worker)
        assert read.status_code == 200

        own = await bearer(http, auditor, AUDIT_HEADERS)
        answer = await http.get(f"/v1/audit/persons/{child}/access", headers=own)
        assert answer.status_code == 200, answer.text
        report = answer.json()
        assert [a["id"] for a in report["alerts"]] == [str(alert.id)]
        seen = {(a["action"], a["actor_org_id"], a["end_user"]) for a in report["accesses"]}
        assert ("api:alert:read", "hackney-cs", "sw-42") in seen
        assert ("api:alert:listed", "hackney-cs", "sw-42") in seen
        assert ("worker:alert:raised", None, None) in seen
        assert all(str(alert.id) in a["alert_ids"] for a in report["accesses"])

        as_csv = await http.get(f"/v1/audit/persons/{child}/access?format=csv", headers=own)
        by_accept = await http.get(
            f"/v1/audit/persons/{child}/access", headers={**own, "Accept": "text/csv"}
        )
        for answer in (as_csv, by_accept):
            assert answer.headers["content-type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(answer.text)))
            assert {(r["action"], r["end_user"]) for r in rows} >= {
                ("api:alert:read", "sw-42"),
                ("api:alert:listed", "sw-42"),
            }
        missing = await http.get("/v1/audit/persons/999999/access", headers=own)
        assert missing.status_code == 404

    async with sessions() as session:
        actions = list(
            (
                await session.execute(
                    select(AuditRecord.action)
                    .where(AuditRecord.object_type == "person", AuditRecord.object_id == str(child))
                    .order_by(AuditRecord.seq)
                )
            ).scalars()
        )
    assert actions == ["api:audit:access_report", "api:audit:exported", "api:audit:exported"]


async def test_verify_over_http_names_the_first_bad_record(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], api_url: str
) -> None:
    auditor, _ = await clients(sessions)
    async with httpx.AsyncClient(base_url=api_url) as http:
        own = await bearer(http, auditor, AUDIT_HEADERS)
        await seal(settings)
        good = (await http.get("/v1/audit/verify", headers=own)).json()
        assert good["ok"] is True, good
        assert good["checkpoints_checked"] == 1
        assert good["records_checked"] >= 5

        async with sessions() as session, session.begin():
            await session.execute(text("ALTER TABLE audit_records DISABLE TRIGGER USER"))
            await session.execute(text("UPDATE audit_records SET outcome = 'ok-ish' WHERE seq = 3"))
            await session.execute(text("ALTER TABLE audit_records ENABLE TRIGGER USER"))
        bad = (await http.get("/v1/audit/verify", headers=own)).json()
    assert bad["ok"] is False
    assert bad["first_bad_seq"] == 3
    assert "seal" in bad["problem"]


async def test_the_audit_routes_are_documented(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url) as http:
        spec = (await http.get("/openapi.json")).json()
    paths = spec["paths"]
    assert set(paths["/v1/audit"]["get"]["responses"]) >= {"200", "403"}
    access = paths["/v1/audit/persons/{person_id}/access"]["get"]["responses"]
    assert set(access) >= {"200", "403", "404"}
    assert "text/csv" in access["200"]["content"]
    assert paths["/v1/audit/verify"]["get"]["summary"]
