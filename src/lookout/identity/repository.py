"""SQL for persons, identifiers, demographic blocking, merges and possible matches."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import (
    bindparam,
    func,
    insert,
    select,
    text,
    tuple_,
    union,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import BigInteger

from lookout.db import advisory_locks, any_of, fetch
from lookout.household.models import Relationship
from lookout.identity.models import (
    IdentityMerge,
    MatchStatus,
    Person,
    PersonIdentifier,
    PossibleMatch,
)
from lookout.identity.scoring import Demographics
from lookout.ingest.models import Event

Key = tuple[str, str]

PERSON_LOCK = 1 << 60  # advisory-lock namespace of persons (households: 2 << 60)


async def lock_persons(session: AsyncSession, person_ids: Iterable[int]) -> None:
    """Serialise work on these persons across workers and API calls."""
    await advisory_locks(session, PERSON_LOCK, person_ids)


_OWNERS = """
    SELECT i.scheme, i.value, i.person_id
    FROM unnest($1::text[], $2::text[]) AS k(scheme, value)
    JOIN person_identifiers i ON i.scheme = k.scheme AND i.value = k.value
"""


async def owners(session: AsyncSession, keys: Iterable[Key]) -> dict[Key, int]:
    """The person holding each known identifier."""
    wanted = list(set(keys))
    if not wanted:
        return {}
    rows = await fetch(session, _OWNERS, [k[0] for k in wanted], [k[1] for k in wanted])
    return {(scheme, value): person_id for scheme, value, person_id in rows}


async def incomplete_persons(session: AsyncSession, person_ids: Iterable[int]) -> set[int]:
    """The persons that still lack a demographic value (the ones worth filling in)."""
    ids = list(set(person_ids))
    if not ids:
        return set()
    rows = await fetch(
        session,
        "SELECT id FROM persons WHERE id = ANY($1) AND (given_name IS NULL"
        " OR family_name IS NULL OR birth_date IS NULL OR postcode IS NULL)",
        ids,
    )
    return {r[0] for r in rows}


async def identifiers_of(session: AsyncSession, person_ids: Iterable[int]) -> dict[int, list[Key]]:
    ids = list(set(person_ids))
    found: dict[int, list[Key]] = {p: [] for p in ids}
    if not ids:
        return found
    rows = await fetch(
        session,
        "SELECT person_id, scheme, value FROM person_identifiers WHERE person_id = ANY($1)",
        ids,
    )
    for person_id, scheme, value in rows:
        found[person_id].append((scheme, value))
    return found


def person_row(raw: dict[str, Any] | None, demo: Demographics | None) -> dict[str, Any]:
    """The columns of a new person: the demographics as given, their normalised forms and
    blocking keys."""
    row: dict[str, Any] = {
        "given_name": None,
        "family_name": None,
        "postcode": None,
        "birth_date": None,
        "norm_given_name": None,
        "norm_family_name": None,
        "norm_postcode": None,
        "family_soundex": None,
        "birth_year": None,
        "postcode_district": None,
        "given_initial": None,
    }
    if raw:
        row.update(raw)
    if demo is not None:
        row["birth_date"] = demo.birth_date
        row.update(demo.blocking_keys())
    return row


async def create_persons(session: AsyncSession, people: Sequence[dict[str, Any]]) -> list[int]:
    if not people:
        return []
    result = await session.execute(
        insert(Person).returning(Person.id, sort_by_parameter_order=True), list(people)
    )
    return list(result.scalars())


async def attach_identifiers(session: AsyncSession, links: dict[Key, int]) -> dict[Key, int]:
    """Give identifiers to persons; an identifier another worker attached first keeps its owner.

    Returns the owner of every key after the statement."""
    if not links:
        return {}
    await session.execute(
        pg_insert(PersonIdentifier).on_conflict_do_nothing(),
        [{"scheme": s, "value": v, "person_id": p} for (s, v), p in links.items()],
    )
    return await owners(session, links)


_FILLABLE = (
    "given_name",
    "family_name",
    "postcode",
    "birth_date",
    "norm_given_name",
    "norm_family_name",
    "norm_postcode",
    "family_soundex",
    "birth_year",
    "postcode_district",
    "given_initial",
)


def _fill_statement() -> Any:
    columns = {c: getattr(Person, c) for c in _FILLABLE}
    sets = ", ".join(f"{c} = COALESCE({c}, :v_{c})" for c in columns)
    wanted = " OR ".join(f"({c} IS NULL AND :v_{c} IS NOT NULL)" for c in columns)
    return text(f"UPDATE persons SET {sets} WHERE id = :pid AND ({wanted})").bindparams(  # noqa: S608 - column names are constants
        bindparam("pid", type_=BigInteger),
        *(bindparam(f"v_{c}", type_=col.type) for c, col in columns.items()),
    )


_FILL = _fill_statement()
_FILL_FROM_MERGED = text(
    "UPDATE persons AS s SET "  # noqa: S608 - column names are constants
    + ", ".join(f"{c} = COALESCE(s.{c}, m.{c})" for c in _FILLABLE)
    + " FROM persons AS m WHERE s.id = :survivor AND m.id = :merged"
).bindparams(bindparam("survivor", type_=BigInteger), bindparam("merged", type_=BigInteger))


async def fill_demographics(session: AsyncSession, rows: dict[int, dict[str, Any]]) -> None:
    """Record demographics where none were known (demographics never overwrite). Rows of
    persons that already have every value are not touched."""
    if not rows:
        return
    params = [
        {"pid": pid, **{f"v_{c}": row.get(c) for c in _FILLABLE}} for pid, row in rows.items()
    ]
    await session.execute(_FILL, params)


@dataclass(frozen=True, slots=True)
class Candidate:
    person_id: int
    demographics: Demographics


async def candidates(session: AsyncSession, demo: Demographics, limit: int) -> list[Candidate]:
    """Live persons sharing a blocking key with ``demo``: the same date of birth; the same
    family-name Soundex and birth year; or the same postcode district and family-name
    Soundex (a district and a given-name initial would hold ~1,000 persons in England).
    Each block is an index scan (partial indexes on live persons), never a table scan."""
    keys = demo.blocking_keys()
    live = Person.merged_into.is_(None)
    blocks = []
    if demo.birth_date is not None:
        blocks.append(select(Person.id).where(live, Person.birth_date == demo.birth_date))
    if keys["family_soundex"] and keys["birth_year"]:
        blocks.append(
            select(Person.id).where(
                live,
                Person.family_soundex == keys["family_soundex"],
                Person.birth_year == keys["birth_year"],
            )
        )
    if keys["postcode_district"] and keys["family_soundex"]:
        blocks.append(
            select(Person.id).where(
                live,
                Person.postcode_district == keys["postcode_district"],
                Person.family_soundex == keys["family_soundex"],
            )
        )
    if not blocks:
        return []
    ids = union(*blocks).subquery() if len(blocks) > 1 else blocks[0].subquery()
    # Join the (small) union of blocks to persons; never walk persons in id order.
    rows = await session.execute(
        select(
            Person.id,
            Person.norm_given_name,
            Person.norm_family_name,
            Person.birth_date,
            Person.norm_postcode,
        )
        .select_from(ids.join(Person, Person.id == ids.c.id))
        .order_by(ids.c.id)
        .limit(limit)
    )
    return [
        Candidate(
            r.id, Demographics(r.norm_given_name, r.norm_family_name, r.birth_date, r.norm_postcode)
        )
        for r in rows
    ]


# The blocks of ``candidates`` for many references in one statement (a NULL key matches
# nothing, as a block left out does), each reference's candidates numbered by its position,
# leaving out the persons that hold an identifier of one of the reference's schemes. A
# reference with a new NHS number reads the blocks of the persons without one (partial
# indexes, migration 0008): nearly everyone holds one, so its whole blocks would be read
# only to be left out. The flag narrows the read; the probe of identifiers decides.
_CANDIDATES_OF = """
    SELECT q.idx, p.id, p.norm_given_name, p.norm_family_name, p.birth_date, p.norm_postcode
    FROM unnest($1::date[], $2::text[], $3::int[], $4::text[], $5::text[], $6::bool[])
        WITH ORDINALITY
        AS q(birth_date, family_soundex, birth_year, postcode_district, schemes, new_nhs, idx)
    CROSS JOIN LATERAL (
        SELECT b.id FROM (
            SELECT id FROM persons WHERE merged_into IS NULL AND q.new_nhs
                AND NOT has_nhs_number AND birth_date = q.birth_date
            UNION
            SELECT id FROM persons WHERE merged_into IS NULL AND q.new_nhs
                AND NOT has_nhs_number
                AND family_soundex = q.family_soundex AND birth_year = q.birth_year
            UNION
            SELECT id FROM persons WHERE merged_into IS NULL AND q.new_nhs
                AND NOT has_nhs_number
                AND postcode_district = q.postcode_district AND family_soundex = q.family_soundex
            UNION
            SELECT id FROM persons WHERE merged_into IS NULL AND NOT q.new_nhs
                AND birth_date = q.birth_date
            UNION
            SELECT id FROM persons WHERE merged_into IS NULL AND NOT q.new_nhs
                AND family_soundex = q.family_soundex AND birth_year = q.birth_year
            UNION
            SELECT id FROM persons WHERE merged_into IS NULL AND NOT q.new_nhs
                AND postcode_district = q.postcode_district AND family_soundex = q.family_soundex
        ) AS b
        WHERE NOT EXISTS (
            SELECT 1 FROM person_identifiers i
            WHERE i.person_id = b.id AND i.scheme = ANY(string_to_array(q.schemes, ','))
        )
        ORDER BY b.id LIMIT $7
    ) AS ids
    JOIN persons p ON p.id = ids.id
"""


async def candidates_of(
    session: AsyncSession,
    demos: Sequence[Demographics],
    without: Sequence[Collection[str]],
    limit: int,
) -> list[list[Candidate]]:
    """:func:`candidates` of each of ``demos``, leaving out the persons holding an
    identifier of one of the schemes in ``without`` (one list per demographics), in one
    round trip."""
    found: list[list[Candidate]] = [[] for _ in demos]
    if not demos:
        return found
    keys = [d.blocking_keys() for d in demos]
    rows = await fetch(
        session,
        _CANDIDATES_OF,
        [d.birth_date for d in demos],
        [k["family_soundex"] for k in keys],
        [k["birth_year"] for k in keys],
        [k["postcode_district"] for k in keys],
        [",".join(sorted(schemes)) for schemes in without],
        ["nhs_number" in schemes for schemes in without],
        limit,
    )
    for idx, person_id, given, family, birth, postcode in rows:
        found[idx - 1].append(Candidate(person_id, Demographics(given, family, birth, postcode)))
    return found


# Merges ----------------------------------------------------------------------------


async def merge_persons(
    session: AsyncSession,
    survivor: int,
    merged: int,
    *,
    reason: str,
    score: float | None,
    evidence: dict[str, Any],
) -> int:
    """Move ``merged``'s identifiers, events and relationships to ``survivor`` and mark it
    merged; return the merge record's id (which lists what moved, for an unlink)."""
    moved_ids = await session.execute(
        update(PersonIdentifier)
        .where(PersonIdentifier.person_id == merged)
        .values(person_id=survivor)
        .returning(PersonIdentifier.scheme, PersonIdentifier.value)
    )
    identifiers = sorted([r.scheme, r.value] for r in moved_ids)
    moved_events = await session.execute(
        update(Event)
        .where(Event.subject_person_id == merged)
        .values(subject_person_id=survivor)
        .returning(Event.id)
    )
    events = sorted(moved_events.scalars())
    await session.execute(
        update(Relationship).where(Relationship.person_id == merged).values(person_id=survivor)
    )
    await session.execute(
        update(Relationship)
        .where(Relationship.related_person_id == merged)
        .values(related_person_id=survivor)
    )
    await session.execute(_FILL_FROM_MERGED, {"survivor": survivor, "merged": merged})
    await session.execute(update(Person).where(Person.id == merged).values(merged_into=survivor))
    await session.execute(
        update(Person).where(Person.merged_into == merged).values(merged_into=survivor)
    )
    result = await session.execute(
        insert(IdentityMerge)
        .values(
            survivor_id=survivor,
            merged_id=merged,
            reason=reason,
            score=score,
            evidence=evidence,
            moved_identifiers=identifiers,
            moved_events=events,
        )
        .returning(IdentityMerge.id)
    )
    return int(result.scalar_one())


async def active_merge(
    session: AsyncSession, survivor: int, merged: int | None
) -> IdentityMerge | None:
    """The newest merge into ``survivor`` (of ``merged`` if given) that is not undone."""
    query = select(IdentityMerge).where(
        IdentityMerge.survivor_id == survivor, IdentityMerge.undone_at.is_(None)
    )
    if merged is not None:
        query = query.where(IdentityMerge.merged_id == merged)
    rows = await session.execute(query.order_by(IdentityMerge.id.desc()).limit(1))
    return rows.scalar_one_or_none()


@dataclass(frozen=True, slots=True)
class SubjectEvent:
    pk: int
    source: str
    type: str
    data: dict[str, Any] | None


async def events_of(session: AsyncSession, person_id: int) -> list[SubjectEvent]:
    rows = await session.execute(
        select(Event.id, Event.source, Event.type, Event.data).where(
            Event.subject_person_id == person_id
        )
    )
    return [SubjectEvent(*r) for r in rows]


async def event_sources(session: AsyncSession, person_id: int) -> list[str]:
    """The publishers of the events about a person."""
    rows = await session.execute(
        select(Event.source).where(Event.subject_person_id == person_id).distinct()
    )
    return list(rows.scalars())


async def undo_merge(
    session: AsyncSession,
    merge: IdentityMerge,
    identifiers: Sequence[Key],
    event_pks: Sequence[int],
) -> None:
    """Give ``identifiers`` and ``event_pks`` (and their relationships) back to the merged
    person, and make it live again."""
    survivor, restored = merge.survivor_id, merge.merged_id
    await session.execute(update(Person).where(Person.id == restored).values(merged_into=None))
    if identifiers:
        await session.execute(
            update(PersonIdentifier)
            .where(
                PersonIdentifier.person_id == survivor,
                tuple_(PersonIdentifier.scheme, PersonIdentifier.value).in_(list(identifiers)),
            )
            .values(person_id=restored)
        )
    if event_pks:
        await session.execute(
            update(Event)
            .where(Event.id.in_(list(event_pks)), Event.subject_person_id == survivor)
            .values(subject_person_id=restored)
        )
        await session.execute(
            update(Relationship)
            .where(Relationship.event_id.in_(list(event_pks)), Relationship.person_id == survivor)
            .values(person_id=restored)
        )
    await session.execute(
        update(IdentityMerge).where(IdentityMerge.id == merge.id).values(undone_at=func.now())
    )


# Possible matches --------------------------------------------------------------------


async def add_possible_match(
    session: AsyncSession,
    *,
    kind: str,
    person_id: int,
    other_person_id: int,
    score: float | None,
    evidence: dict[str, Any],
) -> int | None:
    """Record a pair for review, unless the same pair is already open; return its id."""
    result = await session.execute(
        pg_insert(PossibleMatch)
        .values(
            kind=kind,
            person_id=person_id,
            other_person_id=other_person_id,
            score=score,
            evidence=evidence,
            status=MatchStatus.open,
        )
        .on_conflict_do_nothing(
            index_elements=["person_id", "other_person_id"], index_where=text("status = 'open'")
        )
        .returning(PossibleMatch.id)
    )
    found = result.scalar_one_or_none()
    return int(found) if found is not None else None


async def list_possible_matches(
    session: AsyncSession, *, status: str, after_id: int | None, limit: int
) -> list[PossibleMatch]:
    query = select(PossibleMatch).where(PossibleMatch.status == status)
    if after_id is not None:
        query = query.where(PossibleMatch.id > after_id)
    rows = await session.execute(query.order_by(PossibleMatch.id).limit(limit))
    return list(rows.scalars())


async def get_possible_match(session: AsyncSession, match_id: int) -> PossibleMatch | None:
    rows = await session.execute(
        select(PossibleMatch).where(PossibleMatch.id == match_id).with_for_update()
    )
    return rows.scalar_one_or_none()


async def decide(
    session: AsyncSession, match_id: int, status: str, decided_by: str, merge_id: int | None
) -> None:
    await session.execute(
        update(PossibleMatch)
        .where(PossibleMatch.id == match_id)
        .values(status=status, decided_by=decided_by, decided_at=func.now(), merge_id=merge_id)
    )


async def live_person(session: AsyncSession, person_id: int) -> int | None:
    """Follow ``merged_into`` to the live person (merges flatten chains, so one hop)."""
    rows = await session.execute(
        select(Person.id, Person.merged_into).where(Person.id == person_id)
    )
    row = rows.one_or_none()
    if row is None:
        return None
    return int(row.merged_into or row.id)


async def get_person(session: AsyncSession, person_id: int) -> Person | None:
    rows = await session.execute(select(Person).where(Person.id == person_id))
    return rows.scalar_one_or_none()


async def persons(session: AsyncSession, person_ids: Iterable[int]) -> dict[int, Person]:
    ids = list(set(person_ids))
    if not ids:
        return {}
    rows = await session.execute(select(Person).where(any_of(Person.id, ids)))
    return {p.id: p for p in rows.scalars()}


@dataclass(frozen=True, slots=True)
class PersonNow:
    """A person as the evaluator needs them: their own birth date, and the live person
    they now are (themselves unless merged; merges flatten chains, so one hop) with that
    person's birth date."""

    birth_date: date | None
    live_id: int
    live_birth_date: date | None


_PERSONS_NOW = """
    SELECT p.id, p.birth_date, coalesce(p.merged_into, p.id),
        CASE WHEN p.merged_into IS NULL THEN p.birth_date ELSE m.birth_date END
    FROM persons p LEFT JOIN persons m ON m.id = p.merged_into
    WHERE p.id = ANY($1)
"""


async def persons_now(session: AsyncSession, person_ids: Iterable[int]) -> dict[int, PersonNow]:
    """Each of these persons (that exists) as it is now, in one statement. Events keep the
    ids they named when they arrived."""
    ids = list(set(person_ids))
    if not ids:
        return {}
    rows = await fetch(session, _PERSONS_NOW, ids)
    return {r[0]: PersonNow(r[1], r[2], r[3]) for r in rows}
