"""A batch's key lookups probe their indexes at a population's size. Each worker batch
looks up a few thousand keys at once (identifiers, the persons' homes on a date). With
PostgreSQL's default random_page_cost of 4 the planner answered these, at 100,000 persons,
with a scan and hash of the whole table, 70-90 ms each; the embedded server runs with
Lookout's recommended setting (``RANDOM_PAGE_COST``, docs/operations.md), under which
the cost is that of the keys. The tables here are grown to that size and the plans are
PostgreSQL's own choices."""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lookout.db import fetch
from lookout.household import repository as household_repository
from lookout.identity import repository as identity_repository

_PERSONS = 100_000
_KEYS = 2_000

_GROW = f"""
    INSERT INTO persons (id) SELECT g FROM generate_series(1, {_PERSONS}) AS g;
    INSERT INTO person_identifiers (scheme, value, person_id)
        SELECT 'nhs_number', lpad(g::text, 10, '0'), g FROM generate_series(1, {_PERSONS}) AS g;
    INSERT INTO households (id, uprn, la_code)
        SELECT g, g::text, 'E09000001' FROM generate_series(1, {_PERSONS} / 3) AS g;
    INSERT INTO residences (person_id, household_id, valid_from)
        SELECT g, g / 3 + 1, DATE '2020-01-01' FROM generate_series(1, {_PERSONS} - 3) AS g;
    ANALYZE persons; ANALYZE person_identifiers; ANALYZE households; ANALYZE residences;
"""


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", ()):
        nodes.extend(_plan_nodes(child))
    return nodes


async def _plan(session: AsyncSession, sql: str, *args: Any) -> list[dict[str, Any]]:
    found = (await fetch(session, "EXPLAIN (FORMAT JSON) " + sql, *args))[0][0]
    # The engine's codec has decoded the json already.
    return _plan_nodes((orjson.loads(found) if isinstance(found, str) else found)[0]["Plan"])


@pytest.mark.asyncio
async def test_a_batchs_identifiers_and_homes_are_probed_not_scanned(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        await fetch(session, "SELECT 1")  # begins the transaction on the raw connection
        raw = (await (await session.connection()).get_raw_connection()).driver_connection
        assert raw is not None
        await raw.execute(_GROW)
    persons = list(range(1, _PERSONS, _PERSONS // _KEYS))
    values = [f"{n:010d}" for n in persons]
    async with sessions() as session:
        owners = await _plan(
            session, identity_repository._OWNERS, ["nhs_number"] * len(values), values
        )
        homes = await _plan(
            session,
            household_repository._SUBJECT_HOUSEHOLDS,
            persons,
            [date(2026, 1, 1)] * len(persons),
        )
    assert _tables(owners) == {"person_identifiers": "Index Scan"}, owners
    assert _tables(homes) == {"residences": "Index Scan"}, homes


def _tables(nodes: list[dict[str, Any]]) -> dict[str, str]:
    """How the plan reads each table."""
    return {n["Relation Name"]: n["Node Type"] for n in nodes if "Relation Name" in n}
