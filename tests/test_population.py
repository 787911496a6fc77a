"""The synthetic population: deterministic, valid events, ONS-shaped, bulk-loadable."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import TEST_ACTOR, Feeder, pipeline_config

from lookout.household import service as household
from lookout.household.models import Household, Residence
from lookout.identity.identifiers import is_valid_nhs_number, is_valid_upn
from lookout.identity.models import Person
from lookout.ingest.catalogue import Catalogue
from lookout.ingest.validation import Valid, validate_document
from lookout.orgs import service as orgs
from lookout.orgs.models import OrgKind
from lookout.population import AGENCIES, HOUSEHOLD_TYPES, bulk_load, cloudevents, generate
from lookout.settings import PROJECT_ROOT

AS_OF = date(2026, 11, 1)


def test_deterministic_by_seed() -> None:
    assert generate(500, seed=3) == generate(500, seed=3)
    assert generate(500, seed=3) != generate(500, seed=4)


def test_identifiers_are_valid_and_unique() -> None:
    pop = generate(3000, seed=1)
    nhs = [p.nhs_number for p in pop.persons]
    upns = [p.upn for p in pop.persons if p.upn]
    assert all(is_valid_nhs_number(n) for n in nhs)
    assert all(is_valid_upn(u) for u in upns)
    assert len(set(nhs)) == len(nhs)
    assert len(set(upns)) == len(upns)
    assert upns  # school-age children have them


def test_household_mix_follows_the_ons_shares() -> None:
    pop = generate(40_000, seed=2)
    kinds = Counter(h.kind for h in pop.households)
    for kind, share in HOUSEHOLD_TYPES:
        assert abs(kinds[kind] / len(pop.households) - share) < 0.02, kind
    size = len(pop.persons) / len(pop.households)
    assert 2.1 < size < 2.6


def test_events_are_valid_against_the_contract() -> None:
    catalogue = Catalogue.load(PROJECT_ROOT / "schemas")
    now = datetime(2026, 11, 2, tzinfo=UTC)
    events = list(cloudevents(generate(600, seed=5), incidents=0.3))
    assert {e["type"] for e in events} >= {
        "uk.lookout.person.residence.v1",
        "uk.lookout.person.relationship.v1",
        "uk.lookout.education.enrolment.v1",
        "uk.lookout.health.ed_attendance.v1",
    }
    for e in events:
        outcome = validate_document(e, catalogue=catalogue, now=now, max_skew=timedelta(0))
        assert isinstance(outcome, Valid), (e["type"], outcome)


async def register_synth_agencies(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        for name, source in AGENCIES.items():
            await orgs.create_org(
                session,
                TEST_ACTOR,
                org_id=f"synth-{name}",
                name=name,
                kind=OrgKind.agency,
                source=source,
            )


@pytest.mark.asyncio
async def test_published_events_build_the_same_households(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    pop = generate(150, seed=9)
    await register_synth_agencies(sessions)
    feeder = Feeder(sessions, pipeline_config(now=datetime(2026, 11, 2, tzinfo=UTC)))
    events = list(cloudevents(pop))
    for start in range(0, len(events), 100):
        await feeder.feed(events[start : start + 100])
    async with sessions() as session:
        persons = (await session.execute(select(func.count()).select_from(Person))).scalar_one()
        households = (
            await session.execute(select(func.count()).select_from(Household))
        ).scalar_one()
        [sample] = await household.snapshots(session, [(1, AS_OF)])
    assert persons == len(pop.persons)
    assert households == len(pop.households)
    uprn = {h.uprn: h for h in pop.households}[sample.uprn]
    assert len(sample.members) == len(uprn.members)


@pytest.mark.asyncio
async def test_bulk_load(database_url: str, sessions: async_sessionmaker[AsyncSession]) -> None:
    pop = generate(400, seed=11)
    conn = await asyncpg.connect(database_url)
    try:
        counts = await bulk_load(conn, pop)
    finally:
        await conn.close()
    assert counts["persons"] == len(pop.persons)
    family = next(h for h in pop.households if h.kind == "couple_dependent_children")
    async with sessions() as session:
        [snapshot] = await household.snapshots(session, [(family.index + 1, AS_OF)])
        residences = (
            await session.execute(select(func.count()).select_from(Residence))
        ).scalar_one()
    assert residences == counts["residences"]
    assert {m.person_id for m in snapshot.members} == {m + 1 for m in family.members}
    assert snapshot.relationships  # parents and partners


_GRAPH = {
    "residences": "SELECT person_id, household_id, valid_from, valid_to FROM residences",
    "flags": "SELECT person_id, kind, la_code, valid_from, valid_to FROM flags",
    "enrolments": "SELECT person_id, school_urn, dsl_org_id, valid_from, valid_to FROM enrolments",
}


# Relationship rows whose event (as the pipeline stores one) names another relationship.
_RELATIONSHIP_EVENTS_DIFFERING = """
    SELECT count(*) FROM relationships r JOIN events e ON e.id = r.event_id
    WHERE e.type <> 'uk.lookout.person.relationship.v1'
        OR e.subject_person_id <> r.person_id
        OR (e.facts ->> 'related_person_id')::bigint <> r.related_person_id
        OR e.facts ->> 'relationship' <> r.kind
        OR (e.facts ->> 'start_date')::date <> r.valid_from
        OR e.facts ->> 'end_date' IS NOT NULL
"""


async def _graph(conn: asyncpg.Connection) -> dict[str, Counter[tuple[object, ...]]]:
    return {name: Counter(tuple(r) for r in await conn.fetch(sql)) for name, sql in _GRAPH.items()}


@pytest.mark.asyncio
async def test_the_loaded_graph_is_what_its_events_rebuild(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Every loaded residence, flag and enrolment has the stored events it is rebuilt from,
    so a person's next event changes their graph only from its date, as in production; and
    every loaded relationship has its relationship event, with the facts the pipeline
    stores."""
    pop = generate(600, seed=12)
    assert pop.previous  # every kind of fact is exercised
    assert pop.flags
    assert pop.enrolments
    conn = await asyncpg.connect(database_url)
    try:
        await bulk_load(conn, pop)
        loaded = await _graph(conn)
        async with sessions() as session:
            touched = await household.rebuild_graph(session, range(1, len(pop.persons) + 1))
            await session.commit()
        rebuilt = await _graph(conn)
        related = await conn.fetchval(_RELATIONSHIP_EVENTS_DIFFERING)
    finally:
        await conn.close()
    assert rebuilt == loaded
    assert all(not spans for spans in touched.spans.values())
    assert any(end is not None for *_, end in loaded["residences"])  # ended residences too
    assert related == 0  # every relationship row's event names the same relationship
