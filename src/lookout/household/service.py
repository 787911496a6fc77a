"""The household graph: residences derived from residence events, and snapshots.

A person's residences are recomputed from all of that person's residence events each time
one arrives, so the graph never depends on the order the events came in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lookout.household import repository
from lookout.household.repository import Interval
from lookout.household.snapshot import HouseholdSnapshot, Member, age_on

RESIDENCE = "uk.lookout.person.residence.v1"


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
    return [
        HouseholdSnapshot(
            household_id=household_id,
            uprn=uprn,
            la_code=la_code,
            as_of=as_of,
            members=tuple(
                Member(person_id=p, age=age_on(birth, as_of), joined=joined)
                for p, joined, birth in sorted(members)
            ),
        )
        for (household_id, as_of), (uprn, la_code, members) in zip(queries, rows, strict=True)
    ]
