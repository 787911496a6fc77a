"""The recipient's workflow over HTTP: acknowledge, assign, close, notes, filters, sequence."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import TEST_ACTOR, client_token, raise_alerts, register_orgs

from lookout.audit.models import AuditRecord
from lookout.delivery.models import AlertEvent
from lookout.orgs import service
from lookout.orgs.models import OrgKind

pytestmark = pytest.mark.asyncio


async def test_an_alert_goes_new_acknowledged_closed_and_illegal_moves_answer_409(
    sessions: async_sessionmaker[AsyncSession], api_url: str
) -> None:
    await register_orgs(sessions)
    await raise_alerts(sessions, 2)
    async with httpx.AsyncClient(base_url=api_url) as http:
        own = await client_token(http, sessions, "hackney-cs")
        items = (await http.get("/v1/alerts", headers=own)).json()["items"]
        assert len(items) == 2
        alert_id = items[0]["id"]
        assert items[0]["status"] == "new"
        assert items[0]["review_by"]

        async def post(action: str, body: dict[str, Any] | None = None) -> httpx.Response:
            return await http.post(f"/v1/alerts/{alert_id}/{action}", headers=own, json=body)

        acked = await post("acknowledge")
        assert acked.status_code == 200, acked.text
        assert acked.json()["status"] == "acknowledged"
        again = await post("acknowledge")
        assert again.status_code == 409
        assert "only a new alert" in again.json()["detail"]

        assigned = await post("assign", {"kind": "team", "name": "mash-east"})
        assert assigned.json()["assignee"] == "mash-east"
        by_team = await http.get("/v1/alerts", headers=own, params={"team": "mash-east"})
        assert [a["id"] for a in by_team.json()["items"]] == [alert_id]
        by_status = await http.get("/v1/alerts", headers=own, params={"status": "new"})
        assert alert_id not in [a["id"] for a in by_status.json()["items"]]

        note = await post("notes", {"text": "spoke to the school"})
        assert note.status_code == 201
        assert note.json()["author"] == "sw-42"

        assert (await post("close", {"outcome": "other"})).status_code == 400
        assert (await post("close", {"outcome": "made_up"})).status_code == 422
        closed = await post("close", {"outcome": "referred_to_early_help"})
        assert closed.status_code == 200
        assert closed.json()["outcome"] == "referred_to_early_help"
        assert [n["text"] for n in closed.json()["notes"]] == ["spoke to the school"]
        assert (await post("close", {"outcome": "already_known"})).status_code == 409
        assert (await post("assign", {"kind": "worker", "name": "sw-1"})).status_code == 409

        no_headers = {"Authorization": own["Authorization"]}
        assert (
            await http.post(f"/v1/alerts/{alert_id}/notes", headers=no_headers, json={"text": "x"})
        ).status_code == 400

    async with sessions() as session:
        events = list(
            (
                await session.execute(
                    select(AlertEvent)
                    .where(AlertEvent.org_id == "hackney-cs")
                    .order_by(AlertEvent.sequence)
                )
            ).scalars()
        )
        actions = set((await session.execute(select(AuditRecord.action))).scalars())
    assert [e.sequence for e in events] == list(range(1, 7))
    assert [e.type for e in events] == ["alert.created"] * 2 + ["alert.updated"] * 4
    assert [e.details.get("change") for e in events[2:]] == [
        "status",
        "assignment",
        "note",
        "status",
    ]
    assert {
        "api:alert:acknowledged",
        "api:alert:assigned",
        "api:alert:note_added",
        "api:alert:closed",
    } <= actions


async def test_after_sequence_reads_in_ascending_order_and_fills_gaps(
    sessions: async_sessionmaker[AsyncSession], api_url: str
) -> None:
    await register_orgs(sessions)
    await raise_alerts(sessions, 3)
    await raise_alerts(sessions, 2)
    async with httpx.AsyncClient(base_url=api_url) as http:
        own = await client_token(http, sessions, "hackney-cs")
        first = await http.get("/v1/alerts", headers=own, params={"after_sequence": 0, "limit": 2})
        assert [a["sequence"] for a in first.json()["items"]] == [1, 2]
        rest = await http.get("/v1/alerts", headers=own, params={"after_sequence": 2})
        assert [a["sequence"] for a in rest.json()["items"]] == [3, 4, 5]
        # A subscriber that saw 1, 2 and 5 (say, from webhooks) asks for what it missed.
        gap = await http.get("/v1/alerts", headers=own, params={"after_sequence": 2, "limit": 2})
        assert [a["sequence"] for a in gap.json()["items"]] == [3, 4]
        both = await http.get(
            "/v1/alerts", headers=own, params={"after_sequence": 1, "cursor": "x"}
        )
        assert both.status_code == 400
        newest = await http.get("/v1/alerts", headers=own, params={"limit": 2})
        assert {a["sequence"] for a in newest.json()["items"]} == {4, 5}  # the later batch
        older = await http.get(
            "/v1/alerts", headers=own, params={"limit": 2, "cursor": newest.json()["next_cursor"]}
        )
        assert {a["sequence"] for a in older.json()["items"]} < {1, 2, 3}


async def test_operators_see_alerts_that_have_no_recipient(
    sessions: async_sessionmaker[AsyncSession], api_url: str
) -> None:
    await register_orgs(sessions, children_services=False)
    async with sessions() as session, session.begin():
        await service.create_org(
            session, TEST_ACTOR, org_id="ops", name="Ops", kind=OrgKind.operator
        )
    result = await raise_alerts(sessions, 1)
    [raised] = result.alerts
    assert raised.recipient_org_id is None
    async with httpx.AsyncClient(base_url=api_url) as http:
        operator = await client_token(http, sessions, "ops")
        queue = await http.get("/v1/operator/undeliverable-alerts", headers=operator)
        assert queue.status_code == 200
        [item] = queue.json()["items"]
        assert item["id"] == str(raised.alert_id)
        assert item["recipient_key"] == "children_services:E09000012"
        assert "summary" not in item
    async with sessions() as session:
        events = (await session.execute(select(AlertEvent))).scalars().all()
    assert events == []  # nobody to deliver to: no sequence, no outbox row
