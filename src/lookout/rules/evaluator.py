"""The pure rule evaluator: (event, subject, household snapshot) -> alert candidates.

No I/O: loading snapshots and writing alerts are the pipeline's job, so the evaluator can
be tested with plain data, backtested over history and benchmarked in isolation.
Every condition is monotone in the facts (exists / count at least), which is what makes
the result independent of the order in which events arrive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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


def _member_matches(spec: MemberSpec, member: Member, subject_id: int | None) -> bool:
    if spec.exclude_subject and member.person_id == subject_id:
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
    return fact


def _condition_holds(rule: Rule, event: TriggerEvent) -> bool:
    """The trigger's CEL condition; an expression that fails on this event (a missing
    field, a type mismatch) does not match, and is counted so the author hears of it."""
    if rule.condition is None:
        return True
    try:
        return rule.condition.execute({"data": event.data}) is True
    except Exception:  # CEL raises KeyError/TypeError/RuntimeError/ValueError by case
        metrics.RULE_ERRORS.labels(rule.id).inc()
        return False


def evaluate(
    rules: Sequence[Rule], event: TriggerEvent, household: HouseholdSnapshot
) -> list[Candidate]:
    """Every candidate alert that ``rules`` raise for ``event`` in ``household``."""
    candidates: list[Candidate] = []
    for rule in rules:
        spec = rule.spec
        if event.type not in spec.trigger.types:
            continue
        if not _subject_matches(spec.trigger.subject, event.subject_age):
            continue
        if not _condition_holds(rule, event):
            continue
        conditions: list[dict[str, Any]] = [
            {
                "id": "trigger",
                "description": spec.trigger.description,
                "result": True,
                "events": [
                    {
                        "source": event.source,
                        "id": event.event_id,
                        "type": event.type,
                        "time": event.time.isoformat(),
                    }
                ],
                "subject": {"person_id": event.subject_person_id, "age": event.subject_age},
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
                break
            if condition.member.age_under is not None and condition.member.age_under <= 18:
                children.update(m.person_id for m in matched)
            conditions.append(
                {
                    "id": condition.id,
                    "description": condition.description,
                    "result": True,
                    "members": [_member_fact(m, condition.member) for m in matched],
                }
            )
        else:
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
            for recipient in spec.recipients:
                candidates.append(
                    Candidate(
                        rule=rule,
                        household_id=household.household_id,
                        recipient_key=f"{recipient}:{household.la_code}",
                        children=tuple(sorted(children)),
                        explanation=explanation,
                    )
                )
    return candidates
