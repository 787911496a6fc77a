"""The pure rule evaluator: (event, subject, household snapshot) -> alert candidates.

No I/O: loading snapshots and writing alerts are the pipeline's job, so the evaluator can
be tested with plain data, backtested over history and benchmarked in isolation.
Every condition is monotone in the facts (exists / count at least), which is what makes
the result independent of the order in which events arrive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import cel

from lookout import metrics
from lookout.household.snapshot import HouseholdSnapshot, Member
from lookout.rules.model import MemberSpec, Rule, SubjectSpec, UnknownAge


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


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """A past (or the current) event of a household member, for history windows."""

    event_pk: int
    person_id: int
    source: str
    event_id: str
    type: str
    time: datetime
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Candidate:
    """An alert that a rule says should exist for one recipient."""

    rule: Rule
    household_id: int
    recipient_key: str
    children: tuple[int, ...]
    explanation: dict[str, Any]


def _age_matches(
    age: int | None, at_least: int | None, under: int | None, unknown: UnknownAge
) -> bool:
    if at_least is None and under is None:
        return True
    if age is None:
        return unknown is UnknownAge.counts
    return (at_least is None or age >= at_least) and (under is None or age < under)


def _subject_matches(spec: SubjectSpec, age: int | None) -> bool:
    return _age_matches(age, spec.age_at_least, spec.age_under, spec.unknown_age)


def _flag_holders(member: Member | None, kinds: Sequence[str]) -> set[str]:
    """The local authorities holding any of ``kinds`` for this member (empty: none held)."""
    if member is None:
        return set()
    return {f.la_code for f in member.flag_details if f.kind in kinds}


def _member_matches(spec: MemberSpec, member: Member, subject_id: int | None) -> bool:
    if spec.exclude_subject and member.person_id == subject_id:
        return False
    if spec.flags_any and not _flag_holders(member, spec.flags_any):
        return False
    return _age_matches(member.age, spec.age_at_least, spec.age_under, spec.unknown_age)


def _member_fact(member: Member, spec: MemberSpec) -> dict[str, Any]:
    fact: dict[str, Any] = {"person_id": member.person_id, "age": member.age}
    if member.age is None:
        if spec.age_under is not None and spec.age_under <= 18:
            fact["note"] = "date of birth unknown: counted as a possible child"
        else:
            fact["note"] = "date of birth unknown: counted as matching"
    if member.joined is not None:
        fact["joined"] = member.joined.isoformat()
    if member.flag_details:
        fact["flags"] = [{"kind": f.kind, "held_by": f.la_code} for f in member.flag_details]
    return fact


def _holds(rule: Rule, program: cel.Program | None, data: dict[str, Any]) -> bool:
    """A CEL condition on an event's data; an expression that fails on this event (a
    missing field, a type mismatch) does not match, and is counted so the author hears."""
    if program is None:
        return True
    try:
        return program.execute({"data": data}) is True
    except Exception:  # CEL raises KeyError/TypeError/RuntimeError/ValueError by case
        metrics.RULE_ERRORS.labels(rule.id).inc()
        return False


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
        if spec.scope == "subject":
            if past.person_id != event.subject_person_id:
                continue
        elif past.person_id not in members and past.person_id != event.subject_person_id:
            continue
        if spec.member is not None:
            member = members.get(past.person_id)
            age = member.age if member else event.subject_age
            if not _age_matches(
                age, spec.member.age_at_least, spec.member.age_under, spec.member.unknown_age
            ):
                continue
        if _holds(rule, rule.history_conditions[index], past.data):
            found.append(past)
    return found


def evaluate(
    rules: Sequence[Rule],
    event: TriggerEvent,
    household: HouseholdSnapshot,
    history: Sequence[HistoryEvent] = (),
) -> list[Candidate]:
    """Every candidate alert that ``rules`` raise for ``event`` in ``household``.

    ``history`` holds the events of the household's members (the trigger included) over
    the longest window any rule looks back; one read serves every rule."""
    return [c for rule in rules for c in _evaluate_rule(rule, event, household, history)]


def _event_fact(source: str, event_id: str, type_: str, time: datetime) -> dict[str, Any]:
    return {"source": source, "id": event_id, "type": type_, "time": time.isoformat()}


def _evaluate_rule(
    rule: Rule, event: TriggerEvent, household: HouseholdSnapshot, history: Sequence[HistoryEvent]
) -> list[Candidate]:
    spec = rule.spec
    if event.type not in spec.trigger.types:
        return []
    if not _subject_matches(spec.trigger.subject, event.subject_age):
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
    conditions: list[dict[str, Any]] = [
        {
            "id": "trigger",
            "description": spec.trigger.description,
            "result": True,
            "events": [_event_fact(event.source, event.event_id, event.type, event.time)],
            "subject": {"person_id": event.subject_person_id, "age": event.subject_age}
            | ({"flags_held_by": sorted(plan_las)} if plan_las else {}),
        }
    ]
    children: set[int] = set()
    for condition in spec.household:
        matched = [
            m
            for m in household.members
            if _member_matches(condition.member, m, event.subject_person_id)
        ]
        if len(matched) < condition.count_at_least:
            return []
        if condition.member.age_under is not None and condition.member.age_under <= 18:
            children.update(m.person_id for m in matched)
        if condition.member.flags_any:
            children.update(m.person_id for m in matched)
            for m in matched:
                plan_las |= _flag_holders(m, condition.member.flags_any)
        conditions.append(
            {
                "id": condition.id,
                "description": condition.description,
                "result": True,
                "members": [_member_fact(m, condition.member) for m in matched],
            }
        )
    for index, window in enumerate(spec.history):
        found = _history_matches(rule, index, event, household, history)
        if len(found) < window.count_at_least:
            return []
        conditions.append(
            {
                "id": window.id,
                "description": window.description,
                "result": True,
                "events": [
                    _event_fact(e.source, e.event_id, e.type, e.time) | {"person_id": e.person_id}
                    for e in sorted(found, key=lambda e: (e.time, e.event_pk))
                ],
            }
        )
    explanation = {
        "rule": {"id": rule.id, "version": rule.version, "title": spec.title},
        "household": {
            "id": household.household_id,
            "la_code": household.la_code,
            "as_of": household.as_of.isoformat(),
            "members": len(household.members),
        },
        "conditions": conditions,
        "lawful_basis": " ".join(spec.lawful_basis.split()),
    }
    if spec.trigger.subject.flags_any and event.subject_person_id is not None:
        children.add(event.subject_person_id)
    las = {
        la for recipient in spec.recipients for la in _recipient_las(recipient, household, plan_las)
    }
    return [
        Candidate(
            rule=rule,
            household_id=household.household_id,
            recipient_key=f"children_services:{la}",
            children=tuple(sorted(children)),
            explanation=explanation,
        )
        for la in sorted(las)
    ]


def _recipient_las(recipient: str, household: HouseholdSnapshot, plan_las: set[str]) -> set[str]:
    """Whose children's services receive the alert: the household's local authority, or
    each local authority holding a flag the rule matched."""
    return {household.la_code} if recipient == "children_services" else set(plan_las)
