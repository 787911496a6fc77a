"""The household graph: residences, flags and enrolments derived from events, and snapshots.

A person's residences (and flags, and enrolments) are recomputed from all of that person's
events of the kind each time one arrives or an identity merge/unlink moves events, so the
graph never depends on the order the events came in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lookout.household import repository
from lookout.household.repository import Interval, Period
from lookout.household.snapshot import (
    FlagFact,
    HouseholdSnapshot,
    Member,
    RelationshipFact,
    age_on,
)

RESIDENCE = "uk.lookout.person.residence.v1"
CHILD_PROTECTION_PLAN = "uk.lookout.social_care.child_protection_plan.v1"
LOOKED_AFTER = "uk.lookout.social_care.looked_after.v1"
ENROLMENT = "uk.lookout.education.enrolment.v1"
FLAG_TYPES = {CHILD_PROTECTION_PLAN: "child_protection_plan", LOOKED_AFTER: "looked_after"}
GRAPH_TYPES = frozenset({RESIDENCE, ENROLMENT, *FLAG_TYPES})


def residence_intervals(
    person_id: int, facts: Iterable[tuple[int, dict[str, Any]]]
) -> list[Interval]:
    """Pure: a person's residence periods from their residence facts.

    ``moved_in`` opens a residence (and, unless ``keeps_previous``, ends every other
    residence that day); ``moved_out`` ends it (a move-out with no known move-in means
    the person lived there up to that date). Facts are applied in date order; on one day
    move-outs come first, then the event pk breaks ties, so any arrival order gives the
    same result.
    """
    ordered = sorted(facts, key=lambda f: (f[1]["date"], f[1]["change"] == "moved_in", f[0]))
    open_since: dict[int, date | None] = {}
    intervals: list[Interval] = []
    for _, fact in ordered:
        household, on = fact["household_id"], date.fromisoformat(fact["date"])
        if fact["change"] == "moved_in":
            if not fact.get("keeps_previous", False):
                for other, since in list(open_since.items()):
                    if other != household:
                        intervals.append(Interval(person_id, other, since, on))
                        del open_since[other]
            open_since.setdefault(household, on)
        elif household in open_since:
            intervals.append(Interval(person_id, household, open_since.pop(household), on))
        else:
            intervals.append(Interval(person_id, household, None, on))
    intervals += [Interval(person_id, h, since, None) for h, since in open_since.items()]
    return [
        i
        for i in intervals
        if i.valid_from is None or i.valid_to is None or i.valid_from < i.valid_to
    ]


def flag_periods(person_id: int, facts: Iterable[tuple[int, dict[str, Any]]]) -> list[Period]:
    """Pure: a child's flag periods from their plan / looked-after facts.

    Facts are ``{"flag", "la_code", "change", "date"}``; ``started`` opens a period for
    (flag, LA) and ``ended``/``ceased`` closes it (an end with no known start means the flag
    held up to that date). Applied in date order, ends first on one day, then the event pk:
    any arrival order gives the same periods."""
    ordered = sorted(facts, key=lambda f: (f[1]["date"], f[1]["change"] == "started", f[0]))
    open_since: dict[tuple[str, str], date] = {}
    periods: list[Period] = []
    for _, fact in ordered:
        key, on = (fact["flag"], fact["la_code"]), date.fromisoformat(fact["date"])
        if fact["change"] == "started":
            open_since.setdefault(key, on)
        elif key in open_since:
            periods.append(Period(person_id, key[0], key[1], open_since.pop(key), on))
        else:
            periods.append(Period(person_id, key[0], key[1], None, on))
    periods += [Period(person_id, k[0], k[1], since, None) for k, since in open_since.items()]
    return sorted(
        {
            p
            for p in periods
            if p.valid_from is None or p.valid_to is None or p.valid_from < p.valid_to
        },
        key=lambda p: (p.kind, p.holder or "", p.valid_from or date.min),
    )


def enrolment_periods(person_id: int, facts: Iterable[tuple[int, dict[str, Any]]]) -> list[Period]:
    """Pure: a pupil's enrolment periods. Each enrolment names its school, first day on roll
    and (once known) last day; a later event for the same (school, start) with an end date
    closes it. ``valid_to`` is the day after the last day on roll."""
    latest: dict[tuple[str, str], tuple[str | None, str | None]] = {}
    for _, fact in sorted(facts, key=lambda f: f[0]):
        key = (fact["school_urn"], fact["start_date"])
        end, dsl = fact.get("end_date"), fact.get("dsl_org_id")
        known_end, known_dsl = latest.get(key, (None, None))
        latest[key] = (max(filter(None, (end, known_end)), default=None), dsl or known_dsl)
    return sorted(
        (
            Period(
                person_id,
                urn,
                dsl,
                date.fromisoformat(start),
                date.fromisoformat(end) + timedelta(days=1) if end else None,
            )
            for (urn, start), (end, dsl) in latest.items()
        ),
        key=lambda p: (p.valid_from or date.min, p.kind),
    )


async def rebuild_graph(session: AsyncSession, person_ids: Iterable[int]) -> set[int]:
    """Recompute these persons' residences, flags and enrolments from their events; return
    the households whose membership or members' facts changed (to re-evaluate)."""
    ids = sorted(set(person_ids))
    if not ids:
        return set()
    touched = await rebuild_residences(session, ids)
    flags: dict[int, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for event_type in FLAG_TYPES:
        for person_id, event_pk, facts in await repository.fact_events(session, event_type, ids):
            flags[person_id].append((event_pk, facts))
    enrolments: dict[int, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for person_id, event_pk, facts in await repository.fact_events(session, ENROLMENT, ids):
        enrolments[person_id].append((event_pk, facts))
    changed = await repository.replace_flags(
        session, ids, [p for i in ids for p in flag_periods(i, flags.get(i, []))]
    )
    changed |= await repository.replace_enrolments(
        session, ids, [p for i in ids for p in enrolment_periods(i, enrolments.get(i, []))]
    )
    return touched | await repository.households_ever(session, changed)


async def rebuild_residences(session: AsyncSession, person_ids: Iterable[int]) -> set[int]:
    """Recompute the residences of these persons; return the households whose membership changed."""
    ids = sorted(set(person_ids))
    by_person: dict[int, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for person_id, event_pk, facts in await repository.fact_events(session, RESIDENCE, ids):
        by_person[person_id].append((event_pk, facts))
    intervals = [i for p in ids for i in residence_intervals(p, by_person.get(p, []))]
    return await repository.replace_residences(session, ids, intervals)


async def snapshots(
    session: AsyncSession, queries: Sequence[tuple[int, date]]
) -> list[HouseholdSnapshot]:
    """Each household as it was on each date: its members with their ages on that date."""
    rows = await repository.members_of(session, queries)
    member_queries = [
        (p, as_of)
        for (_, as_of), (_, _, members) in zip(queries, rows, strict=True)
        for p, _, _ in sorted(members)
    ]
    facts = iter(await repository.person_facts(session, member_queries))
    found: list[HouseholdSnapshot] = []
    for (household_id, as_of), (uprn, la_code, members) in zip(queries, rows, strict=True):
        built: list[Member] = []
        relationships: list[RelationshipFact] = []
        ids = {p for p, _, _ in members}
        for p, joined, birth in sorted(members):
            f = next(facts)
            details = tuple(
                FlagFact(k, la, since) for k, la, since in sorted(f.flags, key=_flag_order)
            )
            schools = sorted(f.schools, key=lambda s: (s[2] or date.min, s[0]))
            built.append(
                Member(
                    person_id=p,
                    age=age_on(birth, as_of),
                    joined=joined,
                    flags=frozenset(d.kind for d in details),
                    flag_details=details,
                    school_urn=schools[-1][0] if schools else None,
                )
            )
            relationships += [
                RelationshipFact(p, other, kind, since)
                for other, kind, since in f.relationships
                if other in ids
            ]
        found.append(
            HouseholdSnapshot(
                household_id=household_id,
                uprn=uprn,
                la_code=la_code,
                as_of=as_of,
                members=tuple(built),
                relationships=tuple(
                    sorted(relationships, key=lambda r: (r.person_id, r.related_person_id, r.kind))
                ),
            )
        )
    return found


def _flag_order(flag: tuple[str, str, date | None]) -> tuple[str, str, date]:
    return (flag[0], flag[1], flag[2] or date.min)
