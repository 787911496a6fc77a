"""SQL for households, residences, relationships and household snapshots."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import asyncpg
import orjson
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from lookout.db import advisory_locks, any_of, column_arrays, fetch
from lookout.household.models import Relationship


@dataclass(frozen=True, slots=True)
class Interval:
    person_id: int
    household_id: int
    valid_from: date | None
    valid_to: date | None


# (UPRN, LA code) pairs as two arrays: one prepared statement whatever their number.
_NEW_HOUSEHOLDS = """
    INSERT INTO households (uprn, la_code)
    SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING
"""
_HOUSEHOLDS = """
    SELECT h.uprn, h.la_code, h.id
    FROM unnest($1::text[], $2::text[]) AS k(uprn, la_code)
    JOIN households h ON h.uprn = k.uprn AND h.la_code = k.la_code
"""


async def household_ids(
    session: AsyncSession, addresses: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """The household of each (UPRN, LA code), created when first seen."""
    wanted = sorted(set(addresses))
    if not wanted:
        return {}
    uprns, la_codes = [a[0] for a in wanted], [a[1] for a in wanted]
    await fetch(session, _NEW_HOUSEHOLDS, uprns, la_codes)
    return {(r[0], r[1]): r[2] for r in await fetch(session, _HOUSEHOLDS, uprns, la_codes)}


async def fact_events(
    session: AsyncSession, event_types: Iterable[str], person_ids: Iterable[int]
) -> list[tuple[str, int, int, dict[str, Any]]]:
    """(type, person, event pk, facts) of every unretracted event of these types about these
    persons (one statement for all the types: the persons' events are read once)."""
    ids = list(set(person_ids))
    if not ids:
        return []
    rows = await fetch(
        session,
        "SELECT type, subject_person_id, id, facts FROM events"
        " WHERE subject_person_id = ANY($1) AND type = ANY($2::text[])"
        " AND retracted_by IS NULL",
        ids,
        sorted(set(event_types)),
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def _matched(old: Sequence[tuple[int, Any]], new: Sequence[Any]) -> tuple[list[int], list[Any]]:
    """(ids of the old rows to delete, new values to insert) so that the stored rows equal
    ``new``: rows that stay as they are are neither deleted nor written again."""
    kept: dict[Any, list[int]] = {}
    for row_id, value in old:
        kept.setdefault(value, []).append(row_id)
    added = []
    for value in new:
        if kept.get(value):
            kept[value].pop()
        else:
            added.append(value)
    return [row_id for ids in kept.values() for row_id in ids], added


@dataclass(frozen=True, slots=True)
class _Derived:
    """Statements of one table of the derived graph, whose rows rebuild_graph replaces:
    its columns after ``id``, with the PostgreSQL types of the arrays that insert them."""

    select: str
    delete: str
    insert: str

    @classmethod
    def of(cls, table: str, columns: Sequence[tuple[str, str]]) -> _Derived:
        names = ", ".join(name for name, _ in columns)
        arrays = ", ".join(f"${n}::{kind}[]" for n, (_, kind) in enumerate(columns, 1))
        # Table and column names are the constants below, never input.
        return cls(
            f"SELECT id, {names} FROM {table} WHERE person_id = ANY($1)",  # noqa: S608
            f"DELETE FROM {table} WHERE id = ANY($1)",  # noqa: S608
            f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays})",  # noqa: S608
        )


_RESIDENCES = _Derived.of(
    "residences",
    [
        ("person_id", "bigint"),
        ("household_id", "bigint"),
        ("valid_from", "date"),
        ("valid_to", "date"),
    ],
)
_FLAGS = _Derived.of(
    "flags",
    [
        ("person_id", "bigint"),
        ("kind", "text"),
        ("la_code", "text"),
        ("valid_from", "date"),
        ("valid_to", "date"),
    ],
)
_ENROLMENTS = _Derived.of(
    "enrolments",
    [
        ("person_id", "bigint"),
        ("school_urn", "text"),
        ("dsl_org_id", "text"),
        ("valid_from", "date"),
        ("valid_to", "date"),
    ],
)


async def _replace(
    session: AsyncSession,
    table: _Derived,
    person_ids: Sequence[int],
    rows: Sequence[tuple[Any, ...]],
) -> list[tuple[Any, ...]]:
    """Make these persons' rows of ``table`` ``rows`` (only the rows that differ are
    deleted or inserted: three statements at most); return the rows they had before."""
    if not person_ids:
        return []
    old = [(r[0], tuple(r)[1:]) for r in await fetch(session, table.select, list(person_ids))]
    gone, added = _matched(old, rows)
    if gone:
        await fetch(session, table.delete, gone)
    if added:
        await fetch(session, table.insert, *(list(column) for column in zip(*added, strict=True)))
    return [row for _, row in old]


async def replace_residences(
    session: AsyncSession, person_ids: Sequence[int], intervals: Sequence[Interval]
) -> list[Interval]:
    """Make these persons' residences ``intervals``; return the residences they had before."""
    new = [(i.person_id, i.household_id, i.valid_from, i.valid_to) for i in intervals]
    return [Interval(*row) for row in await _replace(session, _RESIDENCES, person_ids, new)]


@dataclass(frozen=True, slots=True)
class Period:
    """A derived fact about a person for a period (a flag or an enrolment)."""

    person_id: int
    kind: str  # flags: the flag; enrolments: the school URN
    holder: str | None  # flags: the LA code; enrolments: the DSL organisation
    valid_from: date | None
    valid_to: date | None


def _row(p: Period) -> tuple[Any, ...]:
    return (p.person_id, p.kind, p.holder, p.valid_from, p.valid_to)


async def replace_flags(
    session: AsyncSession, person_ids: Sequence[int], periods: Sequence[Period]
) -> list[Period]:
    """Make these persons' flags ``periods``; return the flags they had before."""
    new = [_row(replace(p, holder=p.holder or "")) for p in periods]
    return [Period(*row) for row in await _replace(session, _FLAGS, person_ids, new)]


async def replace_enrolments(
    session: AsyncSession, person_ids: Sequence[int], periods: Sequence[Period]
) -> list[Period]:
    """Make these persons' enrolments ``periods``; return the enrolments they had before."""
    new = [_row(p) for p in periods]
    return [Period(*row) for row in await _replace(session, _ENROLMENTS, person_ids, new)]


HOUSEHOLD_LOCK = 2 << 60  # advisory-lock namespace of households (persons: 1 << 60)


async def lock_households(session: AsyncSession, household_ids: Iterable[int]) -> None:
    """Serialise evaluation of these households across workers; take persons' locks first."""
    await advisory_locks(session, HOUSEHOLD_LOCK, household_ids)


async def households_ever(session: AsyncSession, person_ids: Iterable[int]) -> set[int]:
    """Every household these persons have lived in."""
    ids = list(set(person_ids))
    if not ids:
        return set()
    rows = await fetch(
        session, "SELECT DISTINCT household_id FROM residences WHERE person_id = ANY($1)", ids
    )
    return {r[0] for r in rows}


async def flag_kinds_ever(session: AsyncSession, person_ids: Iterable[int]) -> dict[int, set[str]]:
    """Every kind of flag each of these persons has held, at any time (persons with none
    are left out)."""
    ids = list(set(person_ids))
    if not ids:
        return {}
    rows = await fetch(
        session, "SELECT DISTINCT person_id, kind FROM flags WHERE person_id = ANY($1)", ids
    )
    return _grouped(rows)


def _grouped(rows: Iterable[asyncpg.Record]) -> dict[Any, set[Any]]:
    """(key, value) rows as each key's set of values."""
    found: dict[Any, set[Any]] = {}
    for key, value in rows:
        found.setdefault(key, set()).add(value)
    return found


async def households_ever_of(
    session: AsyncSession, person_ids: Iterable[int]
) -> dict[int, set[int]]:
    """Every household these persons have lived in, with which of them lived there."""
    ids = list(set(person_ids))
    if not ids:
        return {}
    rows = await fetch(
        session,
        "SELECT DISTINCT household_id, person_id FROM residences WHERE person_id = ANY($1)",
        ids,
    )
    return _grouped(rows)


_RELATIONSHIP_COLUMNS = (
    "person_id",
    "related_person_id",
    "kind",
    "valid_from",
    "valid_to",
    "event_id",
)
_INSERT_RELATIONSHIPS = """
    INSERT INTO relationships (person_id, related_person_id, kind, valid_from, valid_to, event_id)
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::date[], $5::date[],
        $6::bigint[])
"""


async def add_relationships(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert relationship rows (one statement, the columns as arrays)."""
    if rows:
        await fetch(session, _INSERT_RELATIONSHIPS, *column_arrays(rows, _RELATIONSHIP_COLUMNS))


async def remove_relationships_of_events(session: AsyncSession, event_pks: Sequence[int]) -> None:
    if event_pks:
        await session.execute(delete(Relationship).where(any_of(Relationship.event_id, event_pks)))


_SUBJECT_HOUSEHOLDS = """
    SELECT q.idx, r.household_id
    FROM unnest($1::bigint[], $2::date[]) WITH ORDINALITY AS q(person_id, as_of, idx)
    JOIN residences r ON r.person_id = q.person_id
        AND (r.valid_from IS NULL OR r.valid_from <= q.as_of)
        AND (r.valid_to IS NULL OR r.valid_to > q.as_of)
"""


async def households_of(
    session: AsyncSession, queries: Sequence[tuple[int, date]]
) -> list[list[int]]:
    """For each (person, date): the households the person lived in on that date."""
    found: list[list[int]] = [[] for _ in queries]
    if not queries:
        return found
    rows = await fetch(
        session, _SUBJECT_HOUSEHOLDS, [q[0] for q in queries], [q[1] for q in queries]
    )
    for idx, household_id in rows:
        found[idx - 1].append(household_id)
    return found


# The members first, then each fact table joined to all of them at once: a correlated
# subquery per member is planned without regard to how often it runs, and on a young
# table whose statistics say "tiny" it became a sequential scan per member (BENCHMARKS.md,
# "Changes made from the profiles", item 16). Facts depend on the person and the date only.
_SNAPSHOT = """
    WITH m AS MATERIALIZED (
        SELECT q.idx, q.as_of, h.uprn, h.la_code, r.person_id, r.valid_from, p.birth_date
        FROM unnest($1::bigint[], $2::date[]) WITH ORDINALITY AS q(household_id, as_of, idx)
        JOIN households h ON h.id = q.household_id
        LEFT JOIN residences r ON r.household_id = q.household_id
            AND (r.valid_from IS NULL OR r.valid_from <= q.as_of)
            AND (r.valid_to IS NULL OR r.valid_to > q.as_of)
        LEFT JOIN persons p ON p.id = r.person_id
    ), k AS MATERIALIZED (
        SELECT DISTINCT person_id, as_of FROM m WHERE person_id IS NOT NULL
    ), fl AS (
        SELECT k.person_id, k.as_of,
            json_agg(json_build_array(f.kind, f.la_code, f.valid_from)) AS flags
        FROM k JOIN flags f ON f.person_id = k.person_id
            AND (f.valid_from IS NULL OR f.valid_from <= k.as_of)
            AND (f.valid_to IS NULL OR f.valid_to > k.as_of)
        GROUP BY k.person_id, k.as_of
    ), en AS (
        SELECT k.person_id, k.as_of,
            json_agg(json_build_array(e.school_urn, e.dsl_org_id, e.valid_from)) AS schools
        FROM k JOIN enrolments e ON e.person_id = k.person_id
            AND (e.valid_from IS NULL OR e.valid_from <= k.as_of)
            AND (e.valid_to IS NULL OR e.valid_to > k.as_of)
        GROUP BY k.person_id, k.as_of
    ), rl AS (
        SELECT k.person_id, k.as_of,
            json_agg(json_build_array(x.related_person_id, x.kind, x.valid_from)) AS relationships
        FROM k JOIN relationships x ON x.person_id = k.person_id
            AND (x.valid_from IS NULL OR x.valid_from <= k.as_of)
            AND (x.valid_to IS NULL OR x.valid_to > k.as_of)
        GROUP BY k.person_id, k.as_of
    )
    SELECT m.idx, m.uprn, m.la_code, m.person_id, m.valid_from, m.birth_date,
        fl.flags, en.schools, rl.relationships
    FROM m
    LEFT JOIN fl ON fl.person_id = m.person_id AND fl.as_of = m.as_of
    LEFT JOIN en ON en.person_id = m.person_id AND en.as_of = m.as_of
    LEFT JOIN rl ON rl.person_id = m.person_id AND rl.as_of = m.as_of
"""


_SCHOOLS = """
    SELECT q.idx,
        (SELECT e.school_urn FROM enrolments e
         WHERE e.person_id = q.person_id
            AND (e.valid_from IS NULL OR e.valid_from <= q.on_date)
            AND (e.valid_to IS NULL OR e.valid_to > q.on_date)
         ORDER BY COALESCE(e.valid_from, DATE '0001-01-01') DESC, e.school_urn DESC
         LIMIT 1)
    FROM unnest($1::bigint[], $2::date[]) WITH ORDINALITY AS q(person_id, on_date, idx)
"""


async def schools_on(
    session: AsyncSession, queries: Sequence[tuple[int, date]]
) -> list[str | None]:
    """Each (person, date)'s school on that date (the latest enrolment in force, as in a
    household snapshot), or None. One round trip."""
    found: list[str | None] = [None for _ in queries]
    if not queries:
        return found
    rows = await fetch(session, _SCHOOLS, [q[0] for q in queries], [q[1] for q in queries])
    for idx, urn in rows:
        found[idx - 1] = urn
    return found


def _on(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


@dataclass
class MemberFacts:
    person_id: int
    joined: date | None
    birth_date: date | None
    flags: list[tuple[str, str, date | None]]  # kind, LA code, since
    schools: list[tuple[str, str | None, date | None]]  # URN, DSL org, since
    relationships: list[tuple[int, str, date | None]]  # related person, kind, since


async def snapshot_rows(
    session: AsyncSession, queries: Sequence[tuple[int, date]]
) -> list[tuple[str, str, list[MemberFacts]]]:
    """For each (household, date): its UPRN, LA code and the residents on that date with
    their flags, enrolments and relationships in force that day. One round trip."""
    found: list[tuple[str, str, list[MemberFacts]]] = [("", "", []) for _ in queries]
    if not queries:
        return found
    rows = await fetch(session, _SNAPSHOT, [q[0] for q in queries], [q[1] for q in queries])
    for idx, uprn, la_code, person_id, joined, birth, flags, schools, rels in rows:
        entry = found[idx - 1]
        if not entry[0]:
            entry = found[idx - 1] = (uprn, la_code, [])
        if person_id is None:
            continue
        entry[2].append(
            MemberFacts(
                person_id,
                joined,
                birth,
                [(k, la, _on(since)) for k, la, since in _json(flags)],
                [(urn, dsl, _on(since)) for urn, dsl, since in _json(schools)],
                [(int(other), kind, _on(since)) for other, kind, since in _json(rels)],
            )
        )
    return found


def _json(value: Any) -> list[Any]:
    if value is None:
        return []
    loaded = orjson.loads(value) if isinstance(value, str | bytes) else value
    return list(loaded)


async def homes_ever(session: AsyncSession, household_ids: Iterable[int]) -> dict[int, set[int]]:
    """Everyone who has a residence at these households at any time, with which of them."""
    ids = list(set(household_ids))
    if not ids:
        return {}
    rows = await fetch(
        session,
        "SELECT DISTINCT person_id, household_id FROM residences WHERE household_id = ANY($1)",
        ids,
    )
    return _grouped(rows)
