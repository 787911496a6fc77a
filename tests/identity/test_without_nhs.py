"""The persons without an NHS number, which a reference with a new NHS number is matched
against on demographics (migration 0008): ``persons.has_nhs_number`` follows the NHS
number through every write of ``person_identifiers`` (a link, a merge, an unlink, a
delete), and the candidate search reads the partial block indexes of the persons without
one instead of whole blocks."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import (
    NOW,
    TEST_ACTOR,
    Feeder,
    ed_attendance,
    event,
    moved_in,
    nhs_number,
    register_orgs,
    upn,
    years_before,
)

from lookout.identity import repository, service
from lookout.identity.models import IdentityMerge, Person, PersonIdentifier
from lookout.identity.scoring import Demographics
from lookout.ingest.models import Event
from lookout.ingest.repository import agencies_by_source
from lookout.population import bulk_load, generate

pytestmark = pytest.mark.asyncio
SINCE = years_before(NOW, 1)


async def flags(sessions: async_sessionmaker[AsyncSession]) -> dict[int, bool]:
    async with sessions() as session:
        rows = await session.execute(select(Person.id, Person.has_nhs_number))
        return {row.id: row.has_nhs_number for row in rows}


async def subject_of(sessions: async_sessionmaker[AsyncSession], event_id: str) -> int:
    async with sessions() as session:
        found = await session.scalar(
            select(Event.subject_person_id).where(Event.event_id == event_id)
        )
    assert found is not None
    return found


async def test_the_flag_follows_the_nhs_number(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The older person (known by the council's id only) survives a merge with the one
    holding the NHS number, so the number moves to it; an unlink moves it back; a delete
    clears it. A pupil known by UPN alone keeps ``false`` throughout."""
    await register_orgs(sessions)
    nhs = nhs_number()
    council = moved_in({"la_person_id": "HK-1", "birth_date": "1990-01-01"}, SINCE)
    hospital = ed_attendance({"nhs_number": nhs})
    bystander = moved_in({"upn": upn()}, SINCE)
    feeder = Feeder(sessions)
    await feeder.feed_each([council, hospital, bystander])
    older, newer = (
        await subject_of(sessions, council["id"]),
        await subject_of(sessions, hospital["id"]),
    )
    other = await subject_of(sessions, bystander["id"])
    assert await flags(sessions) == {older: False, newer: True, other: False}

    both = {"la_person_id": "HK-1", "nhs_number": nhs}
    await feeder.feed([event("charity.concern", {"person": both, "concern_categories": ["other"]})])
    async with sessions() as session:
        merge = (await session.execute(select(IdentityMerge))).scalar_one()
    assert (merge.survivor_id, merge.merged_id) == (older, newer)
    assert await flags(sessions) == {older: True, newer: False, other: False}

    async with sessions() as session, session.begin():
        sources = [s for (s,) in (await session.execute(select(Event.source))).all()]
        agencies = await agencies_by_source(session, sources)
        await service.unlink(session, TEST_ACTOR, older, None, agencies)
    assert await flags(sessions) == {older: False, newer: True, other: False}

    async with sessions() as session, session.begin():
        await session.execute(delete(PersonIdentifier).where(PersonIdentifier.value == nhs))
    assert await flags(sessions) == {older: False, newer: False, other: False}


BLOCKS = ("birth_date", "soundex_year", "district_soundex")


def _indexes_read(plan: dict[str, Any]) -> set[str]:
    """The indexes a plan scanned (a branch whose one-time filter is false never runs)."""
    names = {plan["Index Name"]} if "Index Name" in plan and plan["Actual Loops"] else set()
    for child in plan.get("Plans", ()):
        names |= _indexes_read(child)
    return names


@pytest.mark.parametrize("new_nhs", [True, False], ids=["new nhs number", "new local id"])
async def test_a_new_nhs_number_reads_the_blocks_of_persons_without_one(
    sessions: async_sessionmaker[AsyncSession], new_nhs: bool
) -> None:
    """The plan of the candidate search over a synthetic population (every person holds an
    NHS number): the partial indexes of the persons without one for a new NHS number, the
    indexes of all live persons for a new local id."""
    pop = generate(5000, seed=4)
    async with sessions() as session:
        connection = await session.connection()
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None
        await bulk_load(raw, pop)
        await raw.execute("ANALYZE")
        assert await raw.fetchval("SELECT count(*) FROM persons WHERE NOT has_nhs_number") == 0
        somebody = pop.persons[1234]
        demo = Demographics.from_raw(
            somebody.given_name, somebody.family_name, somebody.birth_date, somebody.postcode
        )
        keys = demo.blocking_keys()
        found = await raw.fetchval(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + repository._CANDIDATES_OF,
            [demo.birth_date],
            [keys["family_soundex"]],
            [keys["birth_year"]],
            [keys["postcode_district"]],
            ["nhs_number" if new_nhs else "police_person_id"],
            [new_nhs],
            200,
        )
        await session.commit()
    plan = (orjson.loads(found) if isinstance(found, str) else found)[0]["Plan"]
    read = {n for n in _indexes_read(plan) if n.startswith("ix_persons_block_")}
    if new_nhs:  # the partial indexes are empty here: any of them serves each block
        assert read, plan
        assert all(n.endswith("_without_nhs") for n in read), plan
    else:
        assert read == {f"ix_persons_block_{b}" for b in BLOCKS}, plan
