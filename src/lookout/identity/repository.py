"""SQL for persons and identifiers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from sqlalchemy import insert, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from lookout.identity.models import Person, PersonIdentifier

Key = tuple[str, str]


async def owners(session: AsyncSession, keys: Iterable[Key]) -> dict[Key, int]:
    """The person holding each known identifier."""
    wanted = list(set(keys))
    if not wanted:
        return {}
    rows = await session.execute(
        select(PersonIdentifier.scheme, PersonIdentifier.value, PersonIdentifier.person_id).where(
            tuple_(PersonIdentifier.scheme, PersonIdentifier.value).in_(wanted)
        )
    )
    return {(r.scheme, r.value): r.person_id for r in rows}


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


async def fill_birth_dates(session: AsyncSession, births: dict[int, date]) -> None:
    """Record a date of birth where none was known (demographics never overwrite)."""
    for person_id, birth_date in births.items():
        await session.execute(
            update(Person)
            .where(Person.id == person_id, Person.birth_date.is_(None))
            .values(birth_date=birth_date)
        )


async def birth_dates(session: AsyncSession, person_ids: Iterable[int]) -> dict[int, date | None]:
    ids = list(set(person_ids))
    if not ids:
        return {}
    rows = await session.execute(select(Person.id, Person.birth_date).where(Person.id.in_(ids)))
    return {r.id: r.birth_date for r in rows}
