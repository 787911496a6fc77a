"""The worker's alert lookups on their indexes (migration 0009): which alerts hold a
batch's events as evidence, and what the closed alerts of a (rule, household, recipient)
hold. Without an index for either, PostgreSQL read every alert (or every alert's
evidence) for every batch, a cost that grew with the table. The alerts a few test
batches raise are copied here into a table of several thousand closed alerts, each with
its own evidence event, and the plans are PostgreSQL's own choices at that size."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import raise_alerts, register_orgs

from lookout.alerts import repository

_COPIES = 3_000

# Each raised alert and its trigger event copied _COPIES times: new ids, the events under
# new publisher ids, the copies closed and under new rule ids (sequence NULL: it is unique
# per organisation).
_GROW = f"""
    CREATE TEMP TABLE copies AS
        SELECT a.id AS alert_id, a.trigger_event_id AS event_pk, g AS n,
               gen_random_uuid() AS new_alert, nextval('events_id_seq') AS new_event
        FROM alerts a, generate_series(1, {_COPIES}) AS g;
    INSERT INTO events
        SELECT (jsonb_populate_record(e, jsonb_build_object(
            'id', c.new_event, 'event_id', e.event_id || '-copy-' || c.n))).*
        FROM copies c JOIN events e ON e.id = c.event_pk;
    INSERT INTO alerts
        SELECT (jsonb_populate_record(a, jsonb_build_object(
            'id', c.new_alert, 'trigger_event_id', c.new_event, 'status', 'closed',
            'sequence', NULL, 'rule_id', a.rule_id || '-' || c.n))).*
        FROM copies c JOIN alerts a ON a.id = c.alert_id;
    INSERT INTO alert_evidence (alert_id, event_id, role)
        SELECT new_alert, new_event, 'trigger' FROM copies;
    ANALYZE events; ANALYZE alerts; ANALYZE alert_evidence;
"""


def _index_scans(plan: dict[str, Any]) -> dict[str, str]:
    """Every index the plan reads, with its index condition."""
    found = {plan["Index Name"]: plan.get("Index Cond", "")} if "Index Name" in plan else {}
    for child in plan.get("Plans", ()):
        found |= _index_scans(child)
    return found


async def _scans(session: AsyncSession, sql: str, *args: Any) -> dict[str, str]:
    raw = (await (await session.connection()).get_raw_connection()).driver_connection
    assert raw is not None
    found = await raw.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args)
    # The engine's codec has decoded the json already.
    return _index_scans((orjson.loads(found) if isinstance(found, str) else found)[0]["Plan"])


@pytest.fixture
async def many(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int, str, str]:
    """A table of thousands of closed alerts; one of them as (event pk, household id,
    rule id, recipient key)."""
    await register_orgs(sessions)
    await raise_alerts(sessions, 2)
    async with sessions() as session, session.begin():
        raw = (await (await session.connection()).get_raw_connection()).driver_connection
        assert raw is not None
        await raw.execute(_GROW)
        row = await raw.fetchrow(
            "SELECT trigger_event_id, household_id, rule_id, recipient_key FROM alerts"
            " WHERE status = 'closed' LIMIT 1"
        )
    return row[0], row[1], row[2], row[3]


@pytest.mark.asyncio
async def test_the_alerts_of_a_batchs_evidence_are_found_by_event(
    sessions: async_sessionmaker[AsyncSession], many: tuple[int, int, str, str]
) -> None:
    async with sessions() as session:
        scans = await _scans(session, repository._UNREVIEWED_WITH_EVIDENCE, [many[0]])
    # alerts_with_evidence (a retraction's) asks the same of alert_evidence.
    assert "event_id = ANY" in scans.get("ix_alert_evidence_event_id", ""), scans


@pytest.mark.asyncio
async def test_the_closed_alerts_of_a_match_are_found_by_key(
    sessions: async_sessionmaker[AsyncSession], many: tuple[int, int, str, str]
) -> None:
    event, household, rule, recipient = many
    async with sessions() as session:
        scans = await _scans(
            session, repository._CLOSED_ALERTS, [rule], [household], [recipient], [event]
        )
    condition = scans.get("ix_alerts_closed_rule_household_recipient", "")
    assert "rule_id" in condition, scans
    assert "household_id" in condition, scans
