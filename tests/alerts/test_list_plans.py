"""The list's statements on their indexes: every filter of ``GET /v1/alerts`` that can be
selective (status, severity, rule, team) is an index condition in the newest-first order,
not a filter over all of the organisation's alerts (at 100,000 alerts, 44-85 ms a page for
a value few alerts have; migration 0007). The plans come from PostgreSQL with sequential
and bitmap scans priced out, so that a few test rows give the plan of a large table: the
question is which index, and with which conditions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import raise_alerts, register_orgs

from lookout.alerts import repository

_VALUES: dict[str, Any] = {
    "status": "closed",
    "severity": "urgent",
    "rule_id": "a-rare-rule",
    "team": "duty-team",
    "created_since": datetime(2026, 1, 1, tzinfo=UTC),
    "created_until": datetime(2026, 2, 1, tzinfo=UTC),
}
# The column each filter narrows on, as PostgreSQL prints it in an index condition.
_COLUMN = {"status": "status", "severity": "severity", "rule_id": "rule_id", "team": "assignee"}


async def _plan(session: AsyncSession, order: str, filters: frozenset[str]) -> dict[str, Any]:
    """The plan of the list statement for this shape, as asyncpg sends it."""
    listing = repository._listing(order, filters)
    params = {name: _VALUES[name] for name in filters} | {"org_id": "hackney-cs", "limit": 51}
    if order == "before":
        params |= {"before_created": datetime.now(UTC), "before_id": uuid.uuid4()}
    if order == "after":
        params |= {"after": 0}
    params |= listing.bound  # literals
    connection = await session.connection()
    raw = (await connection.get_raw_connection()).driver_connection
    assert raw is not None
    await raw.execute("ANALYZE alerts; SET enable_seqscan = off; SET enable_bitmapscan = off")
    found = await raw.fetchval(
        "EXPLAIN (FORMAT JSON) " + listing.sql, *(params[n] for n in listing.names)
    )
    # The engine's codec has decoded the json already.
    plan: dict[str, Any] = (orjson.loads(found) if isinstance(found, str) else found)[0]["Plan"]
    while "Index Name" not in plan:  # Limit (and Sort) above the scan
        plan = plan["Plans"][0]
    return plan


@pytest.mark.asyncio
@pytest.mark.parametrize("order", ["newest", "before"])
@pytest.mark.parametrize("name", sorted(_COLUMN))
async def test_a_selective_filter_is_an_index_condition(
    sessions: async_sessionmaker[AsyncSession], order: str, name: str
) -> None:
    await register_orgs(sessions)
    await raise_alerts(sessions, 3)
    async with sessions() as session:
        plan = await _plan(session, order, frozenset({name}))
    assert plan["Node Type"] == "Index Scan"
    assert plan["Scan Direction"] == "Backward"  # newest first, no sort
    assert _COLUMN[name] in plan["Index Cond"], plan
    assert "Filter" not in plan, plan


@pytest.mark.asyncio
@pytest.mark.parametrize("filters", [(), ("created_since",), ("created_until",)])
async def test_the_unfiltered_and_dated_lists_keep_the_organisation_index(
    sessions: async_sessionmaker[AsyncSession], filters: tuple[str, ...]
) -> None:
    await register_orgs(sessions)
    await raise_alerts(sessions, 3)
    async with sessions() as session:
        plan = await _plan(session, "newest", frozenset(filters))
    assert plan["Index Name"] == "ix_alerts_recipient_created"
    assert plan["Scan Direction"] == "Backward"
    assert "Filter" not in plan, plan
