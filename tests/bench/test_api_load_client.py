"""The API benchmark's load client (``benchmarks.api_load``) measures what it says: real
authenticated requests to the running API that succeed, scrolling by cursor."""

from __future__ import annotations

import httpx
from benchmarks.api_load import _measure, session
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import client_token, raise_alerts, register_orgs

from lookout.alerts.models import Alert
from lookout.audit.models import AuditRecord


async def test_the_load_client_makes_real_audited_requests_that_succeed(
    sessions: async_sessionmaker[AsyncSession], api_url: str
) -> None:
    await register_orgs(sessions)
    await raise_alerts(sessions, 120)  # three pages of 50
    async with httpx.AsyncClient(base_url=api_url) as http:
        headers = await client_token(http, sessions, "hackney-cs")
    token = headers["Authorization"].removeprefix("Bearer ")

    async with session(api_url, 2) as http:
        result = await _measure(http, [token], concurrency=2, seconds=1.0)

    assert result["requests"] > 0
    assert result["errors"] == 0
    async with sessions() as db:
        listed = (
            await db.execute(
                select(func.count())
                .select_from(AuditRecord)
                .where(AuditRecord.action == "api:alert:listed")
            )
        ).scalar_one()
    assert listed >= result["requests"]  # each request reached the API and was audited


async def test_the_team_phase_reads_only_the_teams_queues(
    sessions: async_sessionmaker[AsyncSession], api_url: str
) -> None:
    await register_orgs(sessions)
    await raise_alerts(sessions, 60)
    async with sessions() as db, db.begin():
        ids = (await db.execute(select(Alert.id).order_by(Alert.id).limit(12))).scalars().all()
        await db.execute(
            update(Alert)
            .where(Alert.id.in_(ids))
            .values(assignee_kind="team", assignee="duty-team")
        )
    async with httpx.AsyncClient(base_url=api_url) as http:
        headers = await client_token(http, sessions, "hackney-cs")
    token = headers["Authorization"].removeprefix("Bearer ")

    async with session(api_url, 2) as http:
        result = await _measure(http, [token], 2, 1.0, teams=["duty-team"])

    assert result["requests"] > 0
    assert result["errors"] == 0
    async with sessions() as db:
        pages = (
            (
                await db.execute(
                    select(AuditRecord.details).where(AuditRecord.action == "api:alert:listed")
                )
            )
            .scalars()
            .all()
        )
    assert len(pages) >= result["requests"]
    assert {a for page in pages for a in page["alerts"]} == {str(i) for i in ids}
