"""The pure replay engine: a set of events in, the alerts Lookout's semantics imply out.

No database: persons are linked by strong identifiers, residences come from the same
pure derivation the worker uses (``residence_intervals``), snapshots and history windows
feed the same evaluator. Because the semantics are order-independent, this is the oracle
for rule test cases (``lookout rules test``) and for backtests: the real pipeline must
produce the same alerts whatever order the events arrive in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from lookout.household.service import (
    ENROLMENT,
    FLAG_TYPES,
    enrolment_periods,
    flag_periods,
    residence_intervals,
)
from lookout.household.snapshot import (
    FlagFact,
    HouseholdSnapshot,
    Member,
    RelationshipFact,
    age_on,
)
from lookout.identity.service import LOCAL, NATIONAL
from lookout.ingest.validation import person_refs
from lookout.rules.evaluator import (
    Candidate,
    HistoryEvent,
    NamedPerson,
    TriggerEvent,
    evaluate,
)
from lookout.rules.model import Rule

RESIDENCE = "uk.lookout.person.residence.v1"
RELATIONSHIP = "uk.lookout.person.relationship.v1"
RETRACTION = "uk.lookout.event.retraction.v1"
LONDON = ZoneInfo("Europe/London")


@dataclass(frozen=True)
class ReplayedAlert:
    rule_id: str
    household: tuple[str, str]  # (UPRN, LA code)
    recipient_key: str
    children: frozenset[str]  # each child's first strong identifier, "scheme:value"
    evidence: tuple[tuple[str, str], ...]  # (source, id) of the matching trigger events
    severity: str = ""
    explanation: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass
class _Graph:
    person_of_key: dict[tuple[str, str], int] = field(default_factory=dict)
    births: dict[int, date] = field(default_factory=dict)
    households: dict[tuple[str, str], int] = field(default_factory=dict)

    def person(self, source: str, ref: Mapping[str, Any]) -> int:
        keys = [(s, str(ref[s])) for s in NATIONAL if s in ref]
        keys += [(s, f"{source}:{ref[s]}") for s in LOCAL if s in ref]
        known = sorted({self.person_of_key[k] for k in keys if k in self.person_of_key})
        person = known[0] if known else len(self.births) + len(self.person_of_key) + 1_000_000
        for k in keys:
            self.person_of_key.setdefault(k, person)
        if isinstance(ref.get("birth_date"), str):
            self.births.setdefault(person, date.fromisoformat(ref["birth_date"]))
        return person

    def household(self, address: Mapping[str, Any]) -> int:
        return self.households.setdefault(
            (address["uprn"], address["la_code"]), len(self.households) + 1
        )


def replay(
    events: Iterable[Mapping[str, Any]],
    rules: Sequence[Rule],
    *,
    now: datetime,
    horizon: timedelta = timedelta(days=30),
    timezone: ZoneInfo = LONDON,
) -> list[ReplayedAlert]:
    """The alerts that exist once all ``events`` (valid CloudEvents) have been processed."""
    unique: dict[tuple[str, str], Mapping[str, Any]] = {}
    for e in events:
        unique.setdefault((e["source"], e["id"]), e)
    retracted = {
        (e["source"], e["data"]["retracted_event_id"])
        for e in unique.values()
        if e["type"] == RETRACTION
    }
    ordered = sorted(
        (e for k, e in unique.items() if k not in retracted),
        key=lambda e: (datetime.fromisoformat(e["time"]), e["source"], e["id"]),
    )
    graph = _Graph()
    subject_of: dict[int, int | None] = {}
    named_of: dict[int, list[tuple[str, int]]] = {}
    relationships: list[tuple[int, int, str, date | None, date | None]] = []
    enrolment_facts: dict[int, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    household_of: dict[int, int | None] = {}
    residence_facts: dict[int, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    flag_facts: dict[int, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for pk, e in enumerate(ordered, 1):
        refs = [
            (role, graph.person(e["source"], p)) for _, role, p in person_refs(e["type"], e["data"])
        ]
        subject_id = next((p for role, p in refs if role == "subject"), None)
        subject_of[pk] = subject_id
        named_of[pk] = [(role, p) for role, p in refs if role != "subject"]
        if e["type"] == RELATIONSHIP and subject_id is not None and len(refs) > 1:
            d = e["data"]
            relationships.append(
                (
                    subject_id,
                    refs[1][1],
                    d["relationship"],
                    date.fromisoformat(d["start_date"]) if d.get("start_date") else None,
                    date.fromisoformat(d["end_date"]) if d.get("end_date") else None,
                )
            )
        if e["type"] == ENROLMENT and subject_id is not None:
            d = e["data"]
            enrolment_facts[subject_id].append(
                (
                    pk,
                    {
                        "school_urn": d["school_urn"],
                        "start_date": d["start_date"],
                        "end_date": d.get("end_date"),
                        "dsl_org_id": d.get("dsl_org_id"),
                    },
                )
            )
        address = e["data"].get("address")
        household_of[pk] = graph.household(address) if isinstance(address, dict) else None
        if e["type"] == RESIDENCE and subject_id is not None:
            fact = {
                "household_id": household_of[pk],
                "change": e["data"]["change"],
                "date": e["data"]["date"],
                "keeps_previous": bool(e["data"].get("keeps_previous", False)),
            }
            residence_facts[subject_id].append((pk, fact))
        if e["type"] in FLAG_TYPES and subject_id is not None:
            flag_facts[subject_id].append(
                (
                    pk,
                    {
                        "flag": FLAG_TYPES[e["type"]],
                        "la_code": e["data"]["la_code"],
                        "change": e["data"]["change"],
                        "date": e["data"]["date"],
                    },
                )
            )
    intervals = [i for p, facts in residence_facts.items() for i in residence_intervals(p, facts)]

    flags = {p: flag_periods(p, facts) for p, facts in flag_facts.items()}
    enrolments = {p: enrolment_periods(p, facts) for p, facts in enrolment_facts.items()}

    def school_on(person: int, on: date) -> str | None:
        schools = sorted(
            (
                (e.valid_from or date.min, e.kind)
                for e in enrolments.get(person, ())
                if (e.valid_from is None or e.valid_from <= on)
                and (e.valid_to is None or e.valid_to > on)
            ),
        )
        return schools[-1][1] if schools else None

    def flags_on(person: int, on: date) -> tuple[FlagFact, ...]:
        return tuple(
            FlagFact(f.kind, f.holder or "", f.valid_from)
            for f in flags.get(person, ())
            if (f.valid_from is None or f.valid_from <= on)
            and (f.valid_to is None or f.valid_to > on)
        )

    def member(person: int, joined: date | None, on: date) -> Member:
        held = flags_on(person, on)
        return Member(
            person,
            age_on(graph.births.get(person), on),
            joined,
            flags=frozenset(f.kind for f in held),
            flag_details=held,
            school_urn=school_on(person, on),
        )

    def residents(household: int, on: date) -> list[Member]:
        return sorted(
            (
                member(i.person_id, i.valid_from, on)
                for i in intervals
                if i.household_id == household
                and (i.valid_from is None or i.valid_from <= on)
                and (i.valid_to is None or i.valid_to > on)
            ),
            key=lambda m: m.person_id,
        )

    def relationships_among(members: Sequence[Member], on: date) -> tuple[RelationshipFact, ...]:
        ids = {m.person_id for m in members}
        return tuple(
            sorted(
                {
                    RelationshipFact(a, b, kind, since)
                    for a, b, kind, since, until in relationships
                    if a in ids
                    and b in ids
                    and (since is None or since <= on)
                    and (until is None or until > on)
                },
                key=lambda r: (r.person_id, r.related_person_id, r.kind),
            )
        )

    addresses = {v: k for k, v in graph.households.items()}
    history = [
        HistoryEvent(
            pk,
            subject_of[pk],
            e["source"],
            e["id"],
            e["type"],
            datetime.fromisoformat(e["time"]),
            e["data"],
            household_of[pk],
        )
        for pk, e in enumerate(ordered, 1)
        if subject_of[pk] is not None or household_of[pk] is not None
    ]
    trigger_types = {t for r in rules for t in r.spec.trigger.types}
    found: dict[tuple[str, int, str], tuple[set[int], list[tuple[str, str]]]] = {}
    first: dict[tuple[str, int, str], Candidate] = {}
    for pk, e in enumerate(ordered, 1):
        time = datetime.fromisoformat(e["time"])
        if e["type"] not in trigger_types or time < now - horizon:
            continue
        on = time.astimezone(timezone).date()
        subject = subject_of[pk]
        homes = (
            {household_of[pk]}
            if household_of[pk]
            else {
                i.household_id
                for i in intervals
                if i.person_id == subject
                and (i.valid_from is None or i.valid_from <= on)
                and (i.valid_to is None or i.valid_to > on)
            }
        )
        trigger = TriggerEvent(
            pk,
            e["source"],
            e["id"],
            e["type"],
            time,
            dict(e["data"]),
            subject,
            age_on(graph.births.get(subject or 0), on),
            tuple(
                NamedPerson(role, p, age_on(graph.births.get(p), on), school_on(p, on))
                for role, p in named_of[pk]
            ),
        )
        for home in sorted(h for h in homes if h is not None):
            members = residents(home, on)
            snapshot = HouseholdSnapshot(
                home, *addresses[home], on, tuple(members), relationships_among(members, on)
            )
            concerned = {m.person_id for m in snapshot.members} | {subject or 0}
            past = [h for h in history if h.person_id in concerned or h.household_id == home]
            for c in evaluate(rules, trigger, snapshot, past):
                children, evidence = found.setdefault(
                    (c.rule.id, home, c.recipient_key), (set(), [])
                )
                children.update(c.children)
                first.setdefault((c.rule.id, home, c.recipient_key), c)
                evidence.append((e["source"], e["id"]))
    names: dict[int, str] = {}
    by_preference = sorted(
        graph.person_of_key.items(), key=lambda kv: (kv[0][0] not in NATIONAL, kv[0])
    )
    for (scheme, value), person in by_preference:
        names.setdefault(person, f"{scheme}:{value}")
    return [
        ReplayedAlert(
            rule_id,
            addresses[home],
            key,
            frozenset(names.get(c, f"person:{c}") for c in children),
            tuple(sorted(evidence)),
            first[(rule_id, home, key)].rule.spec.severity.value,
            first[(rule_id, home, key)].explanation,
        )
        for (rule_id, home, key), (children, evidence) in sorted(found.items())
    ]
