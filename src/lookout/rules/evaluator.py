"""The pure rule evaluator: (event, subject, household snapshot) -> alert candidates.

No I/O: loading snapshots and writing alerts are the pipeline's job, so the evaluator can
be tested with plain data, backtested over history and benchmarked in isolation.
Every condition is monotone in the facts (exists / count at least), which is what makes
the result independent of the order in which events arrive.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from lookout import metrics
from lookout.household.snapshot import HouseholdSnapshot, Member
from lookout.rules.model import (
    Condition,
    MemberSpec,
    Rule,
    UnknownAge,
)


@dataclass(frozen=True, slots=True)
class NamedPerson:
    """A person the event names in a role other than its subject (e.g. a child present at a
    police incident), with their age on the event's date."""

    role: str
    person_id: int
    age: int | None
    school_urn: str | None = None  # their school on the event's date, if Lookout knows it


@dataclass(frozen=True, slots=True)
class TriggerEvent:
    """The event being evaluated, as the evaluator sees it."""

    event_pk: int
    source: str
    event_id: str
    type: str
    time: datetime
    data: dict[str, Any]
    subject_person_id: int | None
    subject_age: int | None
    named: tuple[NamedPerson, ...] = ()


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """A past (or the current) event of a household member, or one recorded at the
    household's address (``household_id``, e.g. a police incident), for history windows."""

    event_pk: int
    person_id: int | None
    source: str
    event_id: str
    type: str
    time: datetime
    data: dict[str, Any]
    household_id: int | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """An alert that a rule says should exist for one recipient, cut down to what that
    recipient may see (``children`` and ``explanation``; ``summary`` when the rule gives
    this kind of recipient its own)."""

    rule: Rule
    household_id: int
    recipient_key: str
    children: tuple[int, ...]
    explanation: dict[str, Any]
    summary: str | None = None


def _age_matches(
    age: int | None, at_least: int | None, under: int | None, unknown: UnknownAge
) -> bool:
    if at_least is None and under is None:
        return True
    if age is None:
        return unknown is UnknownAge.counts
    return (at_least is None or age >= at_least) and (under is None or age < under)


def _flag_holders(member: Member | None, kinds: Sequence[str]) -> set[str]:
    """The local authorities holding any of ``kinds`` for this member (empty: none held)."""
    if member is None:
        return set()
    return {f.la_code for f in member.flag_details if f.kind in kinds}


def _member_matches(
    spec: MemberSpec,
    member: Member,
    subject_id: int | None,
    as_of: date,
    relations: dict[int, tuple[str, ...]],
) -> bool:
    if spec.exclude_subject and member.person_id == subject_id:
        return False
    if spec.flags_any and not _flag_holders(member, spec.flags_any):
        return False
    if spec.joined_within_days is not None and not (
        member.joined is not None
        and as_of - timedelta(days=spec.joined_within_days) < member.joined <= as_of
    ):
        return False
    if spec.relationship_to_subject and not (
        set(relations.get(member.person_id, ())) & set(spec.relationship_to_subject)
    ):
        return False
    return _age_matches(member.age, spec.age_at_least, spec.age_under, spec.unknown_age)


def _member_fact(
    member: Member,
    spec: MemberSpec,
    relation: tuple[str, ...] = (),
    named_as: str | None = None,
) -> dict[str, Any]:
    fact: dict[str, Any] = {"person_id": member.person_id, "age": member.age}
    if member.age is None:
        if spec.age_under is not None and spec.age_under <= 18:
            fact["note"] = "date of birth unknown: counted as a possible child"
        else:
            fact["note"] = "date of birth unknown: counted as matching"
    if member.joined is not None:
        fact["joined"] = member.joined.isoformat()
    if relation:
        fact["relationship_to_subject"] = list(relation)
    if named_as:
        fact["named_in_event_as"] = named_as
    if member.flag_details:
        fact["flags"] = [{"kind": f.kind, "held_by": f.la_code} for f in member.flag_details]
    return fact


def _holds(
    rule: Rule, condition: Condition | None, data: dict[str, Any], *, counted: bool = True
) -> bool:
    """A CEL condition on an event's data; an expression that fails on this event (a
    missing field, a type mismatch) does not match, and is counted so the author hears
    (unless ``counted`` is false)."""
    if condition is None:
        return True
    try:
        return condition.holds(data)
    except Exception:  # CEL raises KeyError/TypeError/RuntimeError/ValueError by case
        if counted:
            metrics.RULE_ERRORS.labels(rule.id).inc()
        return False


def window_counts(rule: Rule, index: int, data: dict[str, Any]) -> bool:
    """Whether history window ``index`` of ``rule`` can count an event with this ``data``
    (of one of its types): its condition holds. Ages and dates are the evaluation's. An
    error is not counted here: the evaluation that meets it counts it."""
    return _holds(rule, rule.history_conditions[index], data, counted=False)


def _history_matches(
    rule: Rule,
    index: int,
    event: TriggerEvent,
    household: HouseholdSnapshot,
    history: Sequence[HistoryEvent],
) -> list[HistoryEvent]:
    spec = rule.spec.history[index]
    start = event.time - timedelta(days=spec.within_days)
    members = {m.person_id: m for m in household.members}
    found = []
    for past in history:
        if past.type not in spec.types or not start < past.time <= event.time:
            continue
        about_subject = past.person_id is not None and past.person_id == event.subject_person_id
        at_address = past.household_id is not None and past.household_id == household.household_id
        if spec.scope == "subject":
            if not about_subject:
                continue
        elif not (about_subject or past.person_id in members or at_address):
            continue
        # An event recorded at the household's address (a police incident) is the
        # household's own: ``member`` filters only events about a person.
        if spec.member is not None and not (at_address and past.person_id not in members):
            member = members.get(past.person_id or 0)
            age = member.age if member else event.subject_age
            if not _age_matches(
                age, spec.member.age_at_least, spec.member.age_under, spec.member.unknown_age
            ):
                continue
        if _holds(rule, rule.history_conditions[index], past.data):
            found.append(past)
    return found


def may_trigger(
    rules: Sequence[Rule], event: TriggerEvent, flags_ever: AbstractSet[str]
) -> list[Rule]:
    """The rules that ``evaluate`` may raise for ``event`` in any household: those whose
    trigger checks that need no household hold (its types, the subject's age, the condition
    on ``data``) and, for a trigger asking for a flagged subject, whose flags are among
    ``flags_ever`` (every kind of flag the subject has held, at any time). For any other
    rule ``evaluate`` returns nothing, whatever the snapshot and the history, so a caller
    can skip reading them when this is empty."""
    found = []
    for rule in rules:
        subject = rule.spec.trigger.subject
        if (
            event.type in rule.trigger_types
            and _age_matches(
                event.subject_age, subject.age_at_least, subject.age_under, subject.unknown_age
            )
            and (not subject.flags_any or not flags_ever.isdisjoint(subject.flags_any))
            and _holds(rule, rule.condition, event.data)
        ):
            found.append(rule)
    return found


def evaluate(
    rules: Sequence[Rule],
    event: TriggerEvent,
    household: HouseholdSnapshot,
    history: Sequence[HistoryEvent] = (),
) -> list[Candidate]:
    """Every candidate alert that ``rules`` raise for ``event`` in ``household``: one per
    recipient, each cut down to what that recipient may see (the rule's ``minimisation``).

    ``history`` holds the events of the household's members and those recorded at its
    address (the trigger included) over the longest window any rule looks back; one read
    serves every rule."""
    return [
        c
        for rule in rules
        if event.type in rule.trigger_types
        for c in _evaluate_rule(rule, event, household, history)
    ]


def _event_fact(source: str, event_id: str, type_: str, time: datetime) -> dict[str, Any]:
    return {"source": source, "id": event_id, "type": type_, "time": time.isoformat()}


@dataclass
class _Match:
    """Everything a rule's conditions found, before it is cut down per recipient."""

    subject_las: set[str]  # the local authorities holding the subject's matched flags
    plan_las: set[str]
    children: set[int]
    people: dict[int, Member]  # the household's members and the persons the event names
    household_facts: list[tuple[str, str, list[dict[str, Any]]]]  # id, description, members
    history_facts: list[tuple[str, str, list[dict[str, Any]]]]  # id, description, events


def _evaluate_rule(
    rule: Rule, event: TriggerEvent, household: HouseholdSnapshot, history: Sequence[HistoryEvent]
) -> list[Candidate]:
    spec = rule.spec
    subject_spec = spec.trigger.subject
    if not _age_matches(
        event.subject_age,
        subject_spec.age_at_least,
        subject_spec.age_under,
        subject_spec.unknown_age,
    ):
        return []
    # Local authorities holding a flag a condition asked for: the plan_la recipients.
    plan_las: set[str] = set()
    if spec.trigger.subject.flags_any:
        subject = household.member(event.subject_person_id or 0)
        plan_las = _flag_holders(subject, spec.trigger.subject.flags_any)
        if not plan_las:
            return []
    if not _holds(rule, rule.condition, event.data):
        return []
    people = {m.person_id: m for m in household.members}
    named_roles: dict[int, str] = {}
    for n in event.named:
        named_roles.setdefault(n.person_id, n.role)
        people.setdefault(n.person_id, Member(n.person_id, n.age, None, school_urn=n.school_urn))
    relations = (
        household.relationships_to(event.subject_person_id)
        if spec.household and event.subject_person_id is not None
        else {}
    )
    match = _Match(set(plan_las), plan_las, set(), people, [], [])
    for condition in spec.household:
        pool = list(household.members)
        if condition.also_named:
            residents = {m.person_id for m in pool}
            pool += [
                people[n.person_id]
                for n in event.named
                if n.role in condition.also_named and n.person_id not in residents
            ]
            pool = list({m.person_id: m for m in pool}.values())
        matched = [
            m
            for m in sorted(pool, key=lambda m: m.person_id)
            if _member_matches(
                condition.member, m, event.subject_person_id, household.as_of, relations
            )
        ]
        if len(matched) < condition.count_at_least:
            return []
        if condition.member.age_under is not None and condition.member.age_under <= 18:
            match.children.update(m.person_id for m in matched)
        if condition.member.flags_any:
            match.children.update(m.person_id for m in matched)
            for m in matched:
                match.plan_las |= _flag_holders(m, condition.member.flags_any)
        match.household_facts.append(
            (
                condition.id,
                condition.description,
                [
                    _member_fact(
                        m,
                        condition.member,
                        relations.get(m.person_id, ()),
                        named_roles.get(m.person_id),
                    )
                    for m in matched
                ],
            )
        )
    for index, window in enumerate(spec.history):
        found = _history_matches(rule, index, event, household, history)
        if len(found) < window.count_at_least:
            return []
        match.history_facts.append(
            (
                window.id,
                window.description,
                [
                    _event_fact(e.source, e.event_id, e.type, e.time)
                    | ({"person_id": e.person_id} if e.person_id is not None else {})
                    | ({"at_household": True} if e.household_id == household.household_id else {})
                    for e in sorted(found, key=lambda e: (e.time, e.event_pk))
                ],
            )
        )
    # The subject is one of the children concerned when the rule asks for a flagged subject
    # or a subject under 18 (a pupil, an infant).
    subject_is_child = spec.trigger.subject.age_under is not None and (
        spec.trigger.subject.age_under <= 18
    )
    if (spec.trigger.subject.flags_any or subject_is_child) and event.subject_person_id:
        match.children.add(event.subject_person_id)
        if event.subject_person_id not in match.people:
            match.people[event.subject_person_id] = Member(
                event.subject_person_id, event.subject_age, None
            )
    candidates = []
    for recipient in dict.fromkeys(spec.recipients):
        for key, children in _recipients(recipient, household, match):
            candidates.append(
                Candidate(
                    rule=rule,
                    household_id=household.household_id,
                    recipient_key=key,
                    children=tuple(sorted(children)),
                    explanation=_explain(rule, recipient, event, household, match, children),
                    summary=rule.views[recipient].summary,
                )
            )
    # A rule naming both children_services and plan_la may reach one organisation twice.
    unique = {c.recipient_key: c for c in reversed(candidates)}
    return sorted(unique.values(), key=lambda c: c.recipient_key)


def _recipients(
    kind: str, household: HouseholdSnapshot, match: _Match
) -> list[tuple[str, set[int]]]:
    """(recipient key, the children that recipient may see) for one kind of recipient."""
    if kind == "children_services":
        return [(f"children_services:{household.la_code}", match.children)]
    if kind == "plan_la":
        return [(f"children_services:{la}", match.children) for la in sorted(match.plan_las)]
    pupils: dict[str, set[int]] = {}
    for child in match.children:
        member = match.people.get(child)
        if member is not None and member.school_urn:
            pupils.setdefault(member.school_urn, set()).add(child)
    return [(f"school:{urn}", found) for urn, found in sorted(pupils.items())]


def _child_fact(person_id: int, member: Member | None) -> dict[str, Any]:
    age = member.age if member is not None else None
    fact: dict[str, Any] = {"person_id": person_id, "age": age}
    if age is None:
        fact["note"] = "date of birth unknown: counted as a possible child"
    return fact


def _explain(
    rule: Rule,
    kind: str,
    event: TriggerEvent,
    household: HouseholdSnapshot,
    match: _Match,
    children: set[int],
) -> dict[str, Any]:
    """The explanation one recipient may see: the rule's ``minimisation`` for its kind
    says which facts it carries; a school sees only its own pupils."""
    spec = rule.spec
    view = rule.views[kind]
    carries = view.carries
    trigger_event: dict[str, Any] = {}
    if "event_source" in carries:
        trigger_event["source"] = event.source
    if "event_ref" in carries:
        trigger_event["id"] = event.event_id
    if "event_type" in carries:
        trigger_event["type"] = event.type
    if "event_time" in carries:
        trigger_event["time"] = event.time.isoformat()
    if "event_date" in carries:
        trigger_event["date"] = household.as_of.isoformat()
    trigger: dict[str, Any] = {
        "id": "trigger",
        "description": spec.trigger.description,
        "result": True,
        "events": [trigger_event] if trigger_event else [],
    }
    if "subject" in carries:
        trigger["subject"] = {"person_id": event.subject_person_id, "age": event.subject_age} | (
            {"flags_held_by": sorted(match.subject_las)} if match.subject_las else {}
        )
    if "named" in carries and event.named:
        trigger["named"] = [{"person_id": n.person_id, "role": n.role} for n in event.named]
    conditions: list[dict[str, Any]] = [trigger]
    for cid, description, members in match.household_facts:
        entry: dict[str, Any] = {"id": cid, "description": description, "result": True}
        if "members" in carries:
            entry["members"] = members
        conditions.append(entry)
    for hid, description, events in match.history_facts:
        entry = {"id": hid, "description": description, "result": True}
        if "history" in carries:
            entry["events"] = events
        conditions.append(entry)
    explanation: dict[str, Any] = {
        "rule": {"id": rule.id, "version": rule.version, "title": spec.title},
        "recipient": {
            "kind": kind,
            "carries": list(view.listed),
            "children": view.children,
        },
    }
    if "household" in carries:
        explanation["household"] = {
            "id": household.household_id,
            "la_code": household.la_code,
            "as_of": household.as_of.isoformat(),
            "members": len(household.members),
        }
    explanation["conditions"] = conditions
    explanation["children"] = [_child_fact(c, match.people.get(c)) for c in sorted(children)]
    explanation["lawful_basis"] = rule.lawful_basis
    return explanation
