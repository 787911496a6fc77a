"""A synthetic population for tests, demos and benchmarks: deterministic by seed.

Households follow the household composition of England, as approximate shares rounded
from the Office for National Statistics' figures:

* ONS, *Census 2021, TS003 Household composition* (England and Wales) and
  ONS, *Families and households in the UK: 2022/2023* (one-person households about 30% of
  all households; married, civil-partner and cohabiting couples; lone-parent families
  about 15% of families; average household size about 2.4).

=========================================== ======
household type                              share
=========================================== ======
one person                                  30%
couple, no children (including older pairs) 26%
couple with dependent children              18%
couple with non-dependent children only      6%
lone parent with dependent children          7%
lone parent with non-dependent children      4%
other (multi-family, sharers, 3 generations) 9%
=========================================== ======

Dependent children per family: one 44%, two 41%, three or more 15% (ONS Families and
households 2022, rounded). Children's flags follow the Department for Education's
national statistics for England at 31 March 2023: about 50,800 children on a child
protection plan and 83,800 looked after, out of about 12 million children (0.4% and 0.7%).
These are approximations for realistic benchmark shapes, not statistics to quote.

Persons get valid NHS numbers, school-age children UPNs, some a council person id; names
come from short lists of common given names and surnames (so names repeat, as they do),
dates of birth, postcodes in a few local authorities' postcode districts, and each
household a UPRN. :func:`cloudevents` emits the population as Lookout events;
:func:`bulk_load` writes the graph straight into PostgreSQL with COPY (benchmarks).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from lookout.household.service import ENROLMENT, FLAG_TYPES, RELATIONSHIP, RESIDENCE
from lookout.identity.identifiers import nhs_number_check_digit, upn_check_letter
from lookout.identity.scoring import Demographics

__all__ = [
    "AGENCIES",
    "LOCAL_AUTHORITIES",
    "Population",
    "bulk_load",
    "cloudevents",
    "generate",
]

HOUSEHOLD_TYPES: tuple[tuple[str, float], ...] = (
    ("one_person", 0.30),
    ("couple_no_children", 0.26),
    ("couple_dependent_children", 0.18),
    ("couple_non_dependent_children", 0.06),
    ("lone_parent_dependent_children", 0.07),
    ("lone_parent_non_dependent_children", 0.04),
    ("other", 0.09),
)
CHILDREN_PER_FAMILY = ((1, 0.44), (2, 0.41), (3, 0.11), (4, 0.04))
CPP_RATE, LOOKED_AFTER_RATE = 0.004, 0.007

# (ONS code, DfE LA number for UPNs, postcode districts)
LOCAL_AUTHORITIES: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("E09000012", 204, ("E5", "E8", "E9", "N1", "N16", "N4")),
    ("E09000002", 301, ("IG11", "RM8", "RM9", "RM10", "RM6")),
    ("E09000030", 211, ("E1", "E2", "E3", "E14", "E1W")),
    ("E08000025", 330, tuple(f"B{n}" for n in range(1, 48))),
    ("E06000023", 801, tuple(f"BS{n}" for n in range(1, 17))),
)
AGENCIES = {
    "council": "urn:lookout:agency:synth-council",
    "hospital": "urn:lookout:agency:synth-hospital",
    "police": "urn:lookout:agency:synth-police",
    "schools": "urn:lookout:agency:synth-schools",
}

GIVEN_F = [
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Ivy",
    "Freya",
    "Lily",
    "Florence",
    "Mia",
    "Willow",
    "Rosie",
    "Sophia",
    "Isabella",
    "Grace",
    "Daisy",
    "Sienna",
    "Poppy",
    "Elsie",
    "Emily",
    "Ella",
    "Evelyn",
    "Phoebe",
    "Sofia",
    "Evie",
    "Charlotte",
    "Harper",
    "Millie",
    "Matilda",
    "Maya",
    "Sophie",
    "Alice",
    "Emilia",
    "Isabelle",
    "Ruby",
    "Luna",
    "Maisie",
    "Aria",
    "Penelope",
    "Mila",
    "Bonnie",
    "Sarah",
    "Emma",
    "Laura",
    "Rebecca",
    "Jessica",
    "Hannah",
    "Amy",
    "Lauren",
    "Chloe",
    "Fatima",
    "Aisha",
    "Maryam",
    "Zainab",
    "Susan",
    "Margaret",
    "Patricia",
    "Linda",
    "Karen",
    "Helen",
    "Julie",
    "Janet",
    "Angela",
    "Tracey",
    "Nicola",
    "Claire",
]
GIVEN_M = [
    "Noah",
    "Muhammad",
    "George",
    "Oliver",
    "Leo",
    "Arthur",
    "Oscar",
    "Theodore",
    "Theo",
    "Freddie",
    "Archie",
    "Alfie",
    "Henry",
    "Charlie",
    "Jack",
    "Harry",
    "Thomas",
    "Jacob",
    "Alexander",
    "Lucas",
    "Isaac",
    "Teddy",
    "Finley",
    "William",
    "Joshua",
    "James",
    "Daniel",
    "David",
    "Michael",
    "Christopher",
    "Matthew",
    "Andrew",
    "Mark",
    "Paul",
    "Steven",
    "Richard",
    "Robert",
    "John",
    "Peter",
    "Stephen",
    "Ibrahim",
    "Yusuf",
    "Omar",
    "Ali",
    "Hassan",
    "Adam",
    "Ryan",
    "Kyle",
    "Liam",
    "Connor",
    "Nathan",
    "Samuel",
    "Joseph",
    "Benjamin",
    "Ethan",
    "Mason",
    "Logan",
    "Tyler",
    "Dylan",
    "Reuben",
    "Jude",
    "Ronnie",
    "Albert",
    "Edward",
    "Frank",
]
SURNAMES = [
    "Smith",
    "Jones",
    "Williams",
    "Taylor",
    "Brown",
    "Davies",
    "Evans",
    "Wilson",
    "Thomas",
    "Johnson",
    "Roberts",
    "Robinson",
    "Thompson",
    "Wright",
    "Walker",
    "White",
    "Edwards",
    "Hughes",
    "Green",
    "Hall",
    "Lewis",
    "Harris",
    "Clarke",
    "Patel",
    "Jackson",
    "Wood",
    "Turner",
    "Martin",
    "Cooper",
    "Hill",
    "Ward",
    "Morris",
    "Moore",
    "Clark",
    "Lee",
    "King",
    "Baker",
    "Harrison",
    "Morgan",
    "Allen",
    "James",
    "Scott",
    "Phillips",
    "Watson",
    "Davis",
    "Parker",
    "Price",
    "Bennett",
    "Young",
    "Griffiths",
    "Mitchell",
    "Kelly",
    "Cook",
    "Carter",
    "Richardson",
    "Bailey",
    "Collins",
    "Bell",
    "Shaw",
    "Murphy",
    "Miller",
    "Cox",
    "Richards",
    "Khan",
    "Marshall",
    "Anderson",
    "Simpson",
    "Ellis",
    "Adams",
    "Singh",
    "Begum",
    "Wilkinson",
    "Foster",
    "Chapman",
    "Powell",
    "Webb",
    "Rogers",
    "Gray",
    "Mason",
    "Ali",
    "Hunt",
    "Hussain",
    "Campbell",
    "Matthews",
    "Owen",
    "Palmer",
    "Holmes",
    "Mills",
    "Barnes",
    "Knight",
    "Lloyd",
    "Butler",
    "Russell",
    "Barker",
    "Fisher",
    "Stevens",
    "Jenkins",
    "Murray",
    "Dixon",
    "Harvey",
    "Graham",
    "Pearson",
    "Ahmed",
    "Fletcher",
    "Walsh",
    "Kaur",
    "Gibson",
    "Howard",
    "Andrews",
    "Stewart",
    "Elliott",
    "Reynolds",
    "Saunders",
    "Payne",
    "Fox",
    "Ford",
    "Pearce",
    "Day",
    "Brooks",
    "West",
    "Lawrence",
    "Cole",
    "Atkinson",
    "Bradley",
    "Spencer",
    "Gill",
    "Dawson",
    "Ball",
    "Burton",
    "OBrien",
    "Watts",
    "Rose",
    "Booth",
    "Perry",
    "Ryan",
    "Grant",
    "Wells",
    "Armstrong",
    "Francis",
    "Rees",
    "Hayes",
    "Hart",
    "Hudson",
    "Newman",
    "Barrett",
    "Webster",
    "Hunter",
    "Gregory",
    "Carr",
    "Lowe",
    "Page",
    "Marsh",
    "Riley",
    "Dunn",
    "Woods",
    "Parsons",
    "Berry",
    "Stone",
    "Reid",
    "Holland",
    "Hawkins",
    "Harding",
    "Porter",
    "Robertson",
    "Newton",
    "Oliver",
    "Reed",
    "Kennedy",
    "Williamson",
    "Bird",
    "Gardner",
    "Shah",
    "Dean",
    "Lane",
    "Cooke",
    "Bates",
    "Henderson",
    "Parry",
    "Burgess",
    "Bishop",
    "Walton",
    "Burns",
    "Nicholson",
    "Shepherd",
    "Ross",
    "Cross",
    "Long",
    "Freeman",
    "Warren",
    "Nicholls",
    "Hamilton",
    "Byrne",
    "Sutton",
    "McDonald",
    "Yates",
    "Hodgson",
    "Robson",
    "Curtis",
    "Hopkins",
    "OConnor",
    "Harper",
    "Coleman",
    "Watkins",
    "Moss",
    "McCarthy",
    "Chambers",
    "ONeill",
    "Griffin",
    "Sharp",
    "Hardy",
    "Wheeler",
    "Potter",
    "Osborne",
    "Johnston",
    "Gordon",
    "Doyle",
    "Wallace",
    "George",
    "Jordan",
    "Hutchinson",
    "Rowe",
    "Burke",
    "May",
    "Pritchard",
    "Gilbert",
    "Willis",
    "Higgins",
    "Read",
    "Miles",
    "Stevenson",
    "Stephenson",
    "Hammond",
    "Arnold",
    "Buckley",
    "Walters",
    "Hewitt",
    "Barber",
    "Nelson",
    "Slater",
]


@dataclass(frozen=True, slots=True)
class SynthPerson:
    index: int  # 0-based; the Lookout person id is index + 1 after bulk_load on a fresh db
    given_name: str
    family_name: str
    birth_date: date
    nhs_number: str
    upn: str | None
    la_person_id: str | None
    postcode: str


@dataclass(slots=True)
class SynthHousehold:
    index: int
    uprn: str
    la_code: str
    postcode: str
    since: date
    kind: str
    members: list[int] = field(default_factory=list)
    relationships: list[tuple[int, int, str]] = field(default_factory=list)  # a is kind of b


@dataclass(frozen=True, slots=True)
class SynthPeriod:
    person: int
    kind: str  # a flag kind or a school URN
    holder: str  # LA code or the school's DSL org id
    start: date
    end: date | None


@dataclass(slots=True)
class Population:
    seed: int
    as_of: date
    persons: list[SynthPerson] = field(default_factory=list)
    households: list[SynthHousehold] = field(default_factory=list)
    # A previous address for some persons: (person, household, from, to).
    previous: list[tuple[int, int, date, date]] = field(default_factory=list)
    enrolments: list[SynthPeriod] = field(default_factory=list)
    flags: list[SynthPeriod] = field(default_factory=list)


def _weighted(rng: random.Random, table: tuple[tuple[Any, float], ...]) -> Any:
    x, total = rng.random(), 0.0
    for value, share in table:
        total += share
        if x < total:
            return value
    return table[-1][0]


class _Ids:
    """Sequential, valid identifiers."""

    def __init__(self, seed: int) -> None:
        self.nhs = 400_000_000 + (seed % 97) * 1_000_000
        self.upn = 0

    def nhs_number(self) -> str:
        while True:
            self.nhs += 1
            body = f"{self.nhs:09d}"
            check = nhs_number_check_digit(body)
            if check is not None:
                return body + str(check)

    def upn_for(self, la_number: int) -> str:
        self.upn += 1
        c = self.upn
        body = f"{la_number:03d}{1000 + c // 100_000:04d}{(c // 1000) % 100:02d}{c % 1000:03d}"
        return upn_check_letter(body) + body


def generate(persons: int, seed: int = 1, *, as_of: date = date(2026, 11, 1)) -> Population:
    """About ``persons`` persons (whole households: the last may overshoot a little)."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not security
    ids = _Ids(seed)
    pop = Population(seed=seed, as_of=as_of)
    schools: dict[str, list[str]] = {}
    pupils: dict[str, int] = {}

    def birth(age_low: int, age_high: int) -> date:
        days = rng.randint(age_low * 365, age_high * 365 + 364)
        return as_of - timedelta(days=days)

    def add_person(
        family: str,
        age_low: int,
        age_high: int,
        la: tuple[str, int, tuple[str, ...]],
        postcode: str,
    ) -> int:
        index = len(pop.persons)
        born = birth(age_low, age_high)
        age = (as_of - born).days // 365
        given = rng.choice(GIVEN_F if rng.random() < 0.5 else GIVEN_M)
        upn = ids.upn_for(la[1]) if 4 <= age < 18 else None
        council_id = f"SC-{index:08d}" if rng.random() < 0.1 else None
        pop.persons.append(
            SynthPerson(index, given, family, born, ids.nhs_number(), upn, council_id, postcode)
        )
        if upn is not None:
            urns = schools.setdefault(la[0], [])
            if not urns or pupils[urns[-1]] >= 400:
                urns.append(f"{100000 + len(pupils) + 1:06d}")
                pupils[urns[-1]] = 0
            urn = rng.choice(urns[-3:])
            pupils[urn] += 1
            start = date(as_of.year - (age - 4), 9, 5) if age > 4 else date(as_of.year, 9, 5)
            pop.enrolments.append(SynthPeriod(index, urn, f"school-{urn}", min(start, as_of), None))
        if age < 18:
            for kind, rate in (
                ("child_protection_plan", CPP_RATE),
                ("looked_after", LOOKED_AFTER_RATE),
            ):
                if rng.random() < rate:
                    start = as_of - timedelta(days=rng.randint(1, 700))
                    end = start + timedelta(days=rng.randint(90, 500))
                    pop.flags.append(
                        SynthPeriod(index, kind, la[0], start, end if end < as_of else None)
                    )
        return index

    while len(pop.persons) < persons:
        la = rng.choice(LOCAL_AUTHORITIES)
        postcode = (
            f"{rng.choice(la[2])} {rng.randint(1, 9)}"
            f"{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"
        )
        kind = _weighted(rng, HOUSEHOLD_TYPES)
        h = SynthHousehold(
            index=len(pop.households),
            uprn=str(100_000_000_000 + len(pop.households) * 7 + rng.randint(0, 6)),
            la_code=la[0],
            postcode=postcode,
            since=as_of - timedelta(days=rng.randint(30, 15 * 365)),
            kind=kind,
        )
        family = rng.choice(SURNAMES)
        if kind == "one_person":
            h.members.append(add_person(family, 20, 90, la, postcode))
        elif kind == "other":
            for _ in range(rng.randint(2, 5)):
                h.members.append(add_person(rng.choice(SURNAMES), 18, 45, la, postcode))
        else:
            couple = kind.startswith("couple")
            dependent = kind.endswith("_dependent_children")
            parent_age = (25, 50) if dependent else (45, 75) if "children" in kind else (25, 85)
            adults = [add_person(family, *parent_age, la, postcode)]
            if couple:
                partner_family = family if rng.random() < 0.7 else rng.choice(SURNAMES)
                adults.append(add_person(partner_family, *parent_age, la, postcode))
                h.relationships += [
                    (adults[0], adults[1], "partner"),
                    (adults[1], adults[0], "partner"),
                ]
            children: list[int] = []
            if "children" in kind and not kind.endswith("no_children"):
                count = _weighted(rng, CHILDREN_PER_FAMILY) if dependent else rng.randint(1, 2)
                for _ in range(count):
                    children.append(
                        add_person(family, *((0, 17) if dependent else (18, 30)), la, postcode)
                    )
            h.members += adults + children
            h.relationships += [(a, c, "parent") for a in adults for c in children]
        pop.households.append(h)
        # One in ten households moved here from another address of the population.
        if len(pop.households) > 1 and rng.random() < 0.1:
            old = rng.randrange(len(pop.households) - 1)
            start = h.since - timedelta(days=rng.randint(200, 3000))
            pop.previous += [(m, old, start, h.since) for m in h.members]
    return pop


# CloudEvents --------------------------------------------------------------------------


def _person_ref(p: SynthPerson, *, demographics_only: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {
        "given_name": p.given_name,
        "family_name": p.family_name,
        "birth_date": p.birth_date.isoformat(),
        "postcode": p.postcode,
    }
    if not demographics_only:
        ref["nhs_number"] = p.nhs_number
        if p.upn:
            ref["upn"] = p.upn
    return ref


def cloudevents(pop: Population, *, incidents: float = 0.01) -> Iterator[dict[str, Any]]:
    """The population as Lookout CloudEvents: residences, relationships, enrolments, flags,
    and a mix of ED attendances and domestic-abuse incidents (``incidents`` per household)."""
    rng = random.Random(pop.seed + 1)  # noqa: S311 - synthetic data, not security
    serial = 0

    def envelope(kind: str, source: str, data: dict[str, Any], on: date) -> dict[str, Any]:
        nonlocal serial
        serial += 1
        return {
            "specversion": "1.0",
            "id": f"synth-{pop.seed}-{serial}",
            "source": AGENCIES[source],
            "type": f"uk.lookout.{kind}.v1",
            "time": datetime(on.year, on.month, on.day, 12, tzinfo=UTC).isoformat(),
            "subject": f"synth-ref-{serial}",
            "datacontenttype": "application/json",
            "data": data,
        }

    for h in pop.households:
        address = {"uprn": h.uprn, "la_code": h.la_code}
        for m in h.members:
            data = {
                "person": _person_ref(pop.persons[m]),
                "address": address,
                "change": "moved_in",
                "date": h.since.isoformat(),
            }
            yield envelope("person.residence", "council", data, h.since)
        for a, b, kind in h.relationships:
            if kind == "partner" and a > b:
                continue
            data = {
                "person": _person_ref(pop.persons[a]),
                "related_person": _person_ref(pop.persons[b]),
                "relationship": kind,
            }
            yield envelope("person.relationship", "council", data, h.since)
        if rng.random() < incidents:
            adults = [
                m for m in h.members if (pop.as_of - pop.persons[m].birth_date).days >= 18 * 365
            ]
            if adults:
                on = pop.as_of - timedelta(days=rng.randint(0, 60))
                data = {
                    "patient": _person_ref(pop.persons[rng.choice(adults)]),
                    "site_ods_code": "RQXM1",
                    "presenting_reasons": [rng.choice(["alcohol", "substance", "injury", "other"])],
                }
                yield envelope("health.ed_attendance", "hospital", data, on)
    for e in pop.enrolments:
        data = {
            "pupil": _person_ref(pop.persons[e.person]),
            "school_urn": e.kind,
            "start_date": e.start.isoformat(),
            "dsl_org_id": e.holder,
        }
        yield envelope("education.enrolment", "schools", data, e.start)
    for f in pop.flags:
        kind = (
            "social_care.child_protection_plan"
            if f.kind == "child_protection_plan"
            else "social_care.looked_after"
        )
        ended = "ended" if f.kind == "child_protection_plan" else "ceased"
        changes: tuple[tuple[str, date | None], ...] = (("started", f.start), (ended, f.end))
        for change, when in changes:
            if when is None:
                continue
            data = {
                "child": _person_ref(pop.persons[f.person]),
                "la_code": f.holder,
                "change": change,
                "date": when.isoformat(),
            }
            yield envelope(kind, "council", data, when)


# Bulk load ----------------------------------------------------------------------------


async def bulk_load(conn: asyncpg.Connection, pop: Population) -> dict[str, int]:
    """Write the population's graph into an empty, migrated database with COPY: persons
    (with normalised demographics and blocking keys), identifiers, households, residences,
    relationships, enrolments and flags, each with the stored events (data purged, facts
    kept) it would be rebuilt from. Person ids are ``index + 1``, household ids
    ``index + 1``. Persons are written with ``has_nhs_number`` already set, so that the
    trigger that keeps it (migration 0008) finds nothing to change when the identifiers
    follow. Returns row counts."""
    person_rows = []
    for p in pop.persons:
        demo = Demographics.from_raw(p.given_name, p.family_name, p.birth_date, p.postcode)
        keys = demo.blocking_keys()
        person_rows.append(
            (
                p.index + 1,
                p.birth_date,
                p.given_name,
                p.family_name,
                p.postcode,
                keys["norm_given_name"],
                keys["norm_family_name"],
                keys["norm_postcode"],
                keys["family_soundex"],
                keys["birth_year"],
                keys["postcode_district"],
                keys["given_initial"],
                True,  # every synthetic person has an NHS number (below)
            )
        )
    await conn.copy_records_to_table(
        "persons",
        records=person_rows,
        columns=[
            "id",
            "birth_date",
            "given_name",
            "family_name",
            "postcode",
            "norm_given_name",
            "norm_family_name",
            "norm_postcode",
            "family_soundex",
            "birth_year",
            "postcode_district",
            "given_initial",
            "has_nhs_number",
        ],
    )
    del person_rows
    identifiers = [("nhs_number", p.nhs_number, p.index + 1) for p in pop.persons]
    identifiers += [("upn", p.upn, p.index + 1) for p in pop.persons if p.upn]
    identifiers += [
        ("la_person_id", f"synth-council:{p.la_person_id}", p.index + 1)
        for p in pop.persons
        if p.la_person_id
    ]
    await conn.copy_records_to_table(
        "person_identifiers", records=identifiers, columns=["scheme", "value", "person_id"]
    )
    await conn.copy_records_to_table(
        "households",
        records=[(h.index + 1, h.uprn, h.la_code) for h in pop.households],
        columns=["id", "uprn", "la_code"],
    )
    residences: list[tuple[int, int, date, date | None]] = [
        (m + 1, h.index + 1, h.since, None) for h in pop.households for m in h.members
    ]
    residences += [(m + 1, old + 1, start, end) for m, old, start, end in pop.previous]
    await conn.copy_records_to_table(
        "residences",
        records=residences,
        columns=["person_id", "household_id", "valid_from", "valid_to"],
    )
    relationships = [
        (a, b, kind, h.since) for h in pop.households for a, b, kind in h.relationships
    ]
    # The events behind the graph, as the worker stores them once retention has purged
    # their payloads: a person's next residence, plan or enrolment event then changes their
    # graph from its date on (``household.rebuild_graph`` reads these facts), as it would in
    # production, instead of replacing everything that was loaded.
    facts = list(_graph_facts(pop, residences, relationships))
    now = datetime.now(UTC)
    events = [
        (
            i + 1,
            source,
            f"bulk-{pop.seed}-{i}",
            event_type,
            datetime(on.year, on.month, on.day, tzinfo=UTC),
            f"bulk-{i}",
            hashlib.sha256(f"{pop.seed}-{i}".encode()).digest(),
            person,
            household_id,
            orjson.dumps(fact).decode(),
            now,
            0,
            i,
        )
        for i, (source, event_type, person, household_id, on, fact) in enumerate(facts)
    ]
    del facts
    await conn.copy_records_to_table(
        "events",
        records=events,
        columns=[
            "id",
            "source",
            "event_id",
            "type",
            "event_time",
            "subject_ref",
            "content_hash",
            "subject_person_id",
            "household_id",
            "facts",
            "received_at",
            "kafka_partition",
            "kafka_offset",
        ],
    )
    await conn.copy_records_to_table(
        "relationships",
        records=[
            (a + 1, b + 1, kind, since, None, i + 1)
            for i, (a, b, kind, since) in enumerate(relationships)
        ],
        columns=["person_id", "related_person_id", "kind", "valid_from", "valid_to", "event_id"],
    )
    await conn.copy_records_to_table(
        "enrolments",
        records=[(e.person + 1, e.kind, e.holder, e.start, e.end) for e in pop.enrolments],
        columns=["person_id", "school_urn", "dsl_org_id", "valid_from", "valid_to"],
    )
    await conn.copy_records_to_table(
        "flags",
        records=[(f.person + 1, f.kind, f.holder, f.start, f.end) for f in pop.flags],
        columns=["person_id", "kind", "la_code", "valid_from", "valid_to"],
    )
    for table in ("persons", "households", "events"):
        await conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"  # noqa: S608 - constant names
        )
    await conn.execute("ANALYZE")
    return {
        "persons": len(pop.persons),
        "households": len(pop.households),
        "identifiers": len(identifiers),
        "residences": len(residences),
        "relationships": len(relationships),
        "events": len(events),
        "enrolments": len(pop.enrolments),
        "flags": len(pop.flags),
    }


# (source, type, person id, household id, date, facts) of one stored event.
_GraphFact = tuple[str, str, int, int | None, date, dict[str, Any]]


def _graph_facts(
    pop: Population,
    residences: list[tuple[int, int, date, date | None]],
    relationships: list[tuple[int, int, str, date]],
) -> Iterator[_GraphFact]:
    """The facts of the events the loaded graph is rebuilt from, as the pipeline extracts
    them (``pipeline._extract_facts``): a relationship event for every relationship, a
    move-in for every residence, a move-out for every ended one, a start and an end for
    every flag, an enrolment for every school. Rebuilt from them, the graph is exactly the
    loaded one (a test holds it). The relationships come first, in order: the loaded
    relationship rows name their events as ids 1 to n."""
    council = AGENCIES["council"]
    for a, b, kind, since in relationships:
        related = {
            "related_person_id": b + 1,
            "relationship": kind,
            "start_date": str(since),
            "end_date": None,
        }
        yield council, RELATIONSHIP, a + 1, None, since, related
    for person, home, start, end in residences:
        for change, on in (("moved_in", start), ("moved_out", end)):
            if on is not None:
                move = {
                    "household_id": home,
                    "change": change,
                    "date": str(on),
                    "keeps_previous": False,
                }
                yield council, RESIDENCE, person, home, on, move
    flag_types = {kind: event_type for event_type, kind in FLAG_TYPES.items()}
    for f in pop.flags:
        for change, when in (("started", f.start), ("ended", f.end)):
            if when is not None:
                flag = {"flag": f.kind, "la_code": f.holder, "change": change, "date": str(when)}
                yield council, flag_types[f.kind], f.person + 1, None, when, flag
    for e in pop.enrolments:
        school = {
            "school_urn": e.kind,
            "start_date": str(e.start),
            "end_date": str(e.end - timedelta(days=1)) if e.end else None,
            "dsl_org_id": e.holder,
        }
        yield AGENCIES["schools"], ENROLMENT, e.person + 1, None, e.start, school
