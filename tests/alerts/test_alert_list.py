"""``GET /v1/alerts``: the cursor walk, what each item holds, and the audit of each page."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import OTHER_LA, client_token, raise_alerts, register_orgs

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
