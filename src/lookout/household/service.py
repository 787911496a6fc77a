"""The household graph: residences, flags and enrolments derived from events, and snapshots.

A person's residences (and flags, and enrolments) are recomputed from all of that person's
events of the kind each time one arrives or an identity merge/unlink moves events, so the
graph never depends on the order the events came in.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from lookout.alerts import repository as alerts_repository
from lookout.audit.actions import Action
from lookout.audit.service import Actor, Entry, record
from lookout.errors import Forbidden, NotFound
from lookout.household import access, repository
from lookout.household.repository import Interval, Period
from lookout.household.schemas import (
    FlagOut,
    HouseholdOut,
    MemberOut,
    PeriodOut,
    PersonOut,
    RelationOut,
)
from lookout.household.snapshot import (
    FlagFact,
    HouseholdSnapshot,
    Member,
    RelationshipFact,
    age_on,
)
from lookout.identity import repository as identity_repository
from lookout.orgs.models import OrgKind

RESIDENCE = "uk.lookout.person.residence.v1"
RELATIONSHIP = "uk.lookout.person.relationship.v1"
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


# A span of dates [start, end): None is unbounded on that side.
Span = tuple[date | None, date | None]
ALWAYS: Span = (None, None)


def changed_spans(
    before: Iterable[tuple[Hashable, date | None, date | None]],
    after: Iterable[tuple[Hashable, date | None, date | None]],
) -> list[Span]:
    """Pure: the dates on which two versions of one person's facts read differently.

    A fact is ``(what, valid_from, valid_to)``, in force on the days ``valid_from <= d <
    valid_to``. What a snapshot shows on a day is the set of ``(what, valid_from)`` in force
    (a household's members with the day each joined; a member's flags and schools with
    their since-dates), so a date is changed when those sets differ on it. Returns the
    changed dates as sorted, disjoint spans (empty: nothing reads differently)."""
    old, new = Counter(before), Counter(after)
    if old == new:
        return []
    bounds = sorted({b for _, start, end in old | new for b in (start, end) if b is not None})
    segments: list[Span] = list(zip([None, *bounds], [*bounds, None], strict=True))

    def in_force(facts: Counter[tuple[Hashable, date | None, date | None]], span: Span) -> Any:
        start, end = span
        return [
            ((what, since), n)
            for (what, since, until), n in facts.items()
            if (since is None or (start is not None and since <= start))
            and (until is None or (end is not None and until >= end))
        ]

    def same(a: list[Any], b: list[Any]) -> bool:
        # Counted, not a set: two rows in force are two members (or flags) in a snapshot.
        if not a or not b:
            return not a and not b
        count: Counter[Any] = Counter()
        for key, n in a:
            count[key] += n
        for key, n in b:
            count[key] -= n
        return not any(count.values())

    spans: list[Span] = []
    for segment in segments:
        if same(in_force(old, segment), in_force(new, segment)):
            continue
        if spans and spans[-1][1] == segment[0]:
            spans[-1] = (spans[-1][0], segment[1])
        else:
            spans.append(segment)
    return spans


def covers(spans: Iterable[Span], on: date) -> bool:
    return any((s is None or s <= on) and (e is None or on < e) for s, e in spans)


@dataclass
class Touched:
    """The households whose membership or members' facts changed, each with the dates on
    which they changed: only trigger events on those dates can evaluate differently."""

    spans: dict[int, list[Span]] = field(default_factory=dict)
    # The households each rebuilt person lived in before the rebuild (they may no longer
    # live there at all, yet their events were evaluated there).
    former: dict[int, set[int]] = field(default_factory=dict)

    @property
    def households(self) -> set[int]:
        return set(self.spans)

    def add(self, household_id: int, spans: Iterable[Span]) -> None:
        self.spans.setdefault(household_id, []).extend(spans)

    def add_always(self, household_ids: Iterable[int]) -> None:
        for household_id in household_ids:
            self.add(household_id, [ALWAYS])

    def covers(self, household_id: int, on: date) -> bool:
        return covers(self.spans.get(household_id, ()), on)


async def rebuild_graph(
    session: AsyncSession, person_ids: Iterable[int], *, identity_changed: Iterable[int] = ()
) -> Touched:
    """Recompute these persons' residences, flags and enrolments from their events; return
    the households whose membership or members' facts changed, with the dates on which
    they did (to re-evaluate).

    ``identity_changed``: persons an identity merge or unlink moved events to or from.
    Their events' subject changed, not only their graph, so every household they lived in,
    before or after, changed on every date."""
    ids = sorted(set(person_ids) | set(identity_changed))
    touched = Touched()
    if not ids:
        return touched
    facts: dict[str, dict[int, list[tuple[int, dict[str, Any]]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for event_type, person_id, event_pk, fact in await repository.fact_events(
        session, GRAPH_TYPES, ids
    ):
        facts[event_type][person_id].append((event_pk, fact))
    before, after = await _rebuild_residences(session, ids, facts[RESIDENCE])
    touched.former = {p: {i.household_id for i in found} for p, found in before.items()}
    for person_id in ids:
        old = [(i.household_id, i.valid_from, i.valid_to) for i in before.get(person_id, [])]
        new = [(i.household_id, i.valid_from, i.valid_to) for i in after.get(person_id, [])]
        for household_id in {h for h, _, _ in old} | {h for h, _, _ in new}:
            touched.add(
                household_id,
                changed_spans(
                    (f for f in old if f[0] == household_id),
                    (f for f in new if f[0] == household_id),
                ),
            )
    flags: dict[int, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for event_type in FLAG_TYPES:
        for person_id, found in facts[event_type].items():
            flags[person_id].extend(found)
    enrolments = facts[ENROLMENT]
    new_flags = [p for i in ids for p in flag_periods(i, flags.get(i, []))]
    new_enrolments = [p for i in ids for p in enrolment_periods(i, enrolments.get(i, []))]
    old_flags = await repository.replace_flags(session, ids, new_flags)
    old_enrolments = await repository.replace_enrolments(session, ids, new_enrolments)
    # A member's flags and schools change their household(s) on the dates they change.
    versions: dict[int, tuple[list[Any], list[Any]]] = defaultdict(lambda: ([], []))
    for side, kind, periods in (
        (0, "flag", old_flags),
        (1, "flag", new_flags),
        (0, "school", old_enrolments),
        (1, "school", new_enrolments),
    ):
        for p in periods:
            versions[p.person_id][side].append(
                ((kind, p.kind, p.holder or ""), p.valid_from, p.valid_to)
            )
    changed = {p: changed_spans(old, new) for p, (old, new) in versions.items()}
    changed = {p: spans for p, spans in changed.items() if spans}
    for household_id, persons in (
        await repository.households_ever_of(session, set(changed) | set(identity_changed))
    ).items():
        for person_id in persons:
            touched.add(household_id, changed.get(person_id, ()))
            if person_id in identity_changed:
                touched.add(household_id, [ALWAYS])
    for person_id in identity_changed:
        touched.add_always(
            {i.household_id for i in (*before.get(person_id, []), *after.get(person_id, []))}
        )
    touched.spans = {h: spans for h, spans in touched.spans.items() if spans}
    return touched


async def _rebuild_residences(
    session: AsyncSession,
    ids: Sequence[int],
    by_person: Mapping[int, list[tuple[int, dict[str, Any]]]],
) -> tuple[dict[int, list[Interval]], dict[int, list[Interval]]]:
    """Recompute the residences of these persons from their residence events (pk, facts);
    return them before and after, by person."""
    intervals = [i for p in ids for i in residence_intervals(p, by_person.get(p, []))]
    before: dict[int, list[Interval]] = defaultdict(list)
    for i in await repository.replace_residences(session, ids, intervals):
        before[i.person_id].append(i)
    after: dict[int, list[Interval]] = defaultdict(list)
    for i in intervals:
        after[i.person_id].append(i)
    return before, after


async def snapshots(
    session: AsyncSession, queries: Sequence[tuple[int, date]]
) -> list[HouseholdSnapshot]:
    """Each household as it was on each date: its members with their ages on that date."""
    rows = await repository.snapshot_rows(session, queries)
    found: list[HouseholdSnapshot] = []
    for (household_id, as_of), (uprn, la_code, members) in zip(queries, rows, strict=True):
        built: list[Member] = []
        relationships: list[RelationshipFact] = []
        ids = {m.person_id for m in members}
        for f in sorted(members, key=lambda m: m.person_id):
            details = tuple(
                FlagFact(k, la, since) for k, la, since in sorted(f.flags, key=_flag_order)
            )
            schools = sorted(f.schools, key=lambda s: (s[2] or date.min, s[0]))
            built.append(
                Member(
                    person_id=f.person_id,
                    age=age_on(f.birth_date, as_of),
                    joined=f.joined,
                    flags=frozenset(d.kind for d in details),
                    flag_details=details,
                    school_urn=schools[-1][0] if schools else None,
                )
            )
            relationships += [
                RelationshipFact(f.person_id, other, kind, since)
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


# Reads for practitioners --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reader:
    """Who reads: the organisation, its kind, and (schools) its URN."""

    org_id: str
    kind: str
    school_urn: str | None


async def _allowed(
    session: AsyncSession,
    reader: Reader,
    household_ids: Iterable[int],
    as_of: date | None,
    *,
    window_days: int,
    tz: ZoneInfo,
    what: str,
) -> tuple[date, list[access.Period]]:
    held = await alerts_repository.held_about(session, reader.org_id, household_ids)
    if not held:
        raise NotFound(f"no such {what} for your organisation")
    today = datetime.now(tz).date()
    found = access.periods(held, window_days=window_days, today=today, tz=tz)
    on = as_of or access.default_as_of(found, tz)
    covering = access.covering(found, on)
    if not covering:
        allowed = ", ".join(f"{p.start}..{p.end}" for p in found[:5])
        raise Forbidden(
            f"as_of {on} is outside the periods of your alerts about this {what}: {allowed}"
        )
    return on, covering


def _period_out(period: access.Period) -> PeriodOut:
    return PeriodOut(alert_id=str(period.alert.id), start=period.start, end=period.end)


def _flags_out(member: Member) -> list[FlagOut]:
    return [FlagOut(kind=f.kind, la_code=f.la_code, since=f.since) for f in member.flag_details]


async def read_household(
    session: AsyncSession,
    actor: Actor,
    reader: Reader,
    household_id: int,
    as_of: date | None,
    *,
    window_days: int,
    tz: ZoneInfo,
) -> HouseholdOut:
    """The household as of a date within the period of an alert the reader holds about it;
    a school sees only its own pupils. Every read (and every refusal) is audited."""
    try:
        on, covering = await _allowed(
            session, reader, [household_id], as_of, window_days=window_days, tz=tz, what="household"
        )
    except (NotFound, Forbidden) as exc:
        await record(
            session,
            actor,
            [Entry(Action.request_denied, "household", str(household_id), outcome=exc.title)],
        )
        raise
    [snapshot] = await snapshots(session, [(household_id, on)])
    members = list(snapshot.members)
    if reader.kind == OrgKind.school:
        members = [m for m in members if m.school_urn and m.school_urn == reader.school_urn]
    people = await identity_repository.persons(session, [m.person_id for m in members])
    visible = {m.person_id for m in members}
    out = HouseholdOut(
        id=household_id,
        uprn=snapshot.uprn,
        la_code=snapshot.la_code,
        as_of=on,
        members=[
            MemberOut(
                person_id=m.person_id,
                given_name=people[m.person_id].given_name,
                family_name=people[m.person_id].family_name,
                birth_date=people[m.person_id].birth_date,
                age=m.age,
                role=m.role,
                joined=m.joined,
                flags=_flags_out(m),
                school_urn=m.school_urn,
                relationships=[
                    RelationOut(person_id=other, relationship=kind)
                    for other, kinds in sorted(snapshot.relationships_to(m.person_id).items())
                    if other in visible
                    for kind in kinds
                ],
            )
            for m in members
        ],
        readable_period=_period_out(covering[0]),
        partial=len(members) != len(snapshot.members),
    )
    await record(
        session,
        actor,
        [
            Entry(
                Action.household_read,
                "household",
                str(household_id),
                details={
                    "as_of": on.isoformat(),
                    "alert": str(covering[0].alert.id),
                    "persons": sorted(visible),
                },
            )
        ],
    )
    return out


async def read_person(
    session: AsyncSession,
    actor: Actor,
    reader: Reader,
    person_id: int,
    as_of: date | None,
    *,
    window_days: int,
    tz: ZoneInfo,
) -> PersonOut:
    """A person as of a date, readable when they lived on that date in a household the
    reader holds an alert about (within its period); a school reads only its pupils."""
    try:
        live = await identity_repository.live_person(session, person_id)
        homes = await repository.households_ever(session, [live] if live else [])
        on, covering = await _allowed(
            session, reader, homes, as_of, window_days=window_days, tz=tz, what="person"
        )
        assert live is not None  # households_ever of nobody is empty: _allowed raised
        then = set((await repository.households_of(session, [(live, on)]))[0])
        covering = [p for p in covering if p.alert.household_id in then]
        if not covering:
            raise Forbidden(f"on {on} this person did not live in a household of your alerts")
        [snapshot] = await snapshots(session, [(covering[0].alert.household_id, on)])
        member = snapshot.member(live)
        if member is None:  # pragma: no cover - households_of said they lived there
            raise Forbidden(f"on {on} this person did not live in a household of your alerts")
        if reader.kind == OrgKind.school and member.school_urn != reader.school_urn:
            raise NotFound("no such person for your organisation")
    except (NotFound, Forbidden) as exc:
        await record(
            session,
            actor,
            [Entry(Action.request_denied, "person", str(person_id), outcome=exc.title)],
        )
        raise
    found = (await identity_repository.persons(session, [live]))[live]
    await record(
        session,
        actor,
        [
            Entry(
                Action.person_read,
                "person",
                str(live),
                details={"as_of": on.isoformat(), "alert": str(covering[0].alert.id)},
            )
        ],
    )
    return PersonOut(
        id=live,
        as_of=on,
        given_name=found.given_name,
        family_name=found.family_name,
        birth_date=found.birth_date,
        postcode=found.postcode,
        age=member.age,
        household_ids=sorted(then),
        flags=_flags_out(member),
        school_urn=member.school_urn,
        readable_period=_period_out(covering[0]),
    )
