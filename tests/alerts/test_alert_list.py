"""``GET /v1/alerts``: the cursor walk, what each item holds, and the audit of each page."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import OTHER_LA, client_token, raise_alerts, register_orgs

from lookout.alerts.models import Alert
from lookout.alerts.repository import LISTED_COLUMNS
from lookout.alerts.schemas import AlertDetail, AlertOut
from lookout.audit.actions import Action
from lookout.audit.models import AuditRecord


def test_a_list_reads_exactly_the_columns_an_item_shows() -> None:
    assert list(LISTED_COLUMNS) == list(AlertOut.model_fields)


@pytest.mark.asyncio
async def test_the_cursor_walks_every_alert_once_newest_first_and_each_page_is_audited(
    sessions: async_sessionmaker[AsyncSession], api_url: str
) -> None:
    await register_orgs(sessions)
    await raise_alerts(sessions, 3)  # one transaction: the same created_at, ordered by id
    await raise_alerts(sessions, 2)
    await raise_alerts(sessions, 1, la_code=OTHER_LA)  # another organisation's
    async with httpx.AsyncClient(base_url=api_url) as http:
        own = await client_token(http, sessions, "hackney-cs")
        pages: list[list[dict[str, Any]]] = []
        params: dict[str, Any] = {"limit": 2}
        while True:
            answer = await http.get("/v1/alerts", headers=own, params=params)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            pages.append(body["items"])
            if body["next_cursor"] is None:
                break
            params = {"limit": 2, "cursor": body["next_cursor"]}
        items = [item for page in pages for item in page]
        assert [len(page) for page in pages] == [2, 2, 1]
        assert len({item["id"] for item in items}) == 5
        order = [(item["created_at"], item["id"]) for item in items]
        assert order == sorted(order, reverse=True)
        assert sorted(item["sequence"] for item in items) == [1, 2, 3, 4, 5]
        # Each item is the alert as its own page shows it, less the detail's extra fields.
        for item in items:
            detail = (await http.get(f"/v1/alerts/{item['id']}", headers=own)).json()
            extra = set(AlertDetail.model_fields) - set(AlertOut.model_fields)
            assert item == {k: v for k, v in detail.items() if k not in extra}
            assert "explanation" not in item
    async with sessions() as session:
        listed = (
            await session.scalars(
                select(AuditRecord)
                .where(AuditRecord.action == Action.alert_listed)
                .order_by(AuditRecord.seq)
            )
        ).all()
    assert [r.details["alerts"] for r in listed] == [[i["id"] for i in page] for page in pages]
    assert all(r.details["count"] == len(r.details["alerts"]) for r in listed)
    assert {(r.actor_org_id, r.end_user, r.purpose) for r in listed} == {
        ("hackney-cs", "sw-42", "safeguarding_triage")
    }


@pytest.mark.asyncio
async def test_filters_narrow_both_orders_and_an_empty_one_is_ignored(
    sessions: async_sessionmaker[AsyncSession], api_url: str
) -> None:
    await register_orgs(sessions)
    await raise_alerts(sessions, 3)
    await raise_alerts(sessions, 2)
    await raise_alerts(sessions, 2, la_code=OTHER_LA)  # another organisation's
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Alert.id, Alert.sequence, Alert.created_at).where(
                    Alert.recipient_org_id == "hackney-cs"
                )
            )
        ).all()
    newest_first = [str(r.id) for r in sorted(rows, key=lambda r: (r.created_at, r.id))][::-1]
    by_sequence = {str(r.id): r.sequence for r in rows}
    async with httpx.AsyncClient(base_url=api_url) as http:
        own = await client_token(http, sessions, "hackney-cs")

        async def ids(**params: Any) -> list[str]:
            answer = await http.get("/v1/alerts", headers=own, params=params)
            assert answer.status_code == 200, answer.text
            return [item["id"] for item in answer.json()["items"]]

        assert await ids() == newest_first
        assert await ids(rule="") == newest_first  # empty: no filter
        acked = newest_first[1]
        assert (await http.post(f"/v1/alerts/{acked}/acknowledge", headers=own)).status_code == 200
        assert await ids(status="acknowledged") == [acked]
        assert await ids(status="new") == [a for a in newest_first if a != acked]
        assert await ids(status="new", after_sequence=0) == sorted(
            (a for a in newest_first if a != acked), key=by_sequence.__getitem__
        )
        assert await ids(status="closed") == []
        assert await ids(rule="no-such-rule") == []
        assert await ids(team="mash") == []
        first = (
            await http.get("/v1/alerts", headers=own, params={"limit": 2, "status": "new"})
        ).json()
        rest = await ids(status="new", cursor=first["next_cursor"])
        assert [i["id"] for i in first["items"]] + rest == [a for a in newest_first if a != acked]
        assert await ids(created_until="2000-01-01T00:00:00Z") == []
        assert await ids(created_since="2000-01-01T00:00:00Z") == newest_first
