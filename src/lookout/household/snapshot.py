"""The household as it was on one date: plain data handed to the pure rule evaluator.

A snapshot carries everything a rule may ask about the household at ``as_of``: its
members with their ages, the date each joined, their flags (with the local authority
holding each), each child's school, and the relationships between members.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

CHILD_UNDER = 18


def age_on(birth_date: date | None, on: date) -> int | None:
    """Whole years completed on ``on`` (a birthday counts on the day); None if unknown.

    A 29 February birthday is reached on 1 March in non-leap years."""
    if birth_date is None:
        return None
    years = on.year - birth_date.year
    if (on.month, on.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


@dataclass(frozen=True, slots=True)
class FlagFact:
    """A child protection plan or looked-after period in force, and the LA that holds it."""

    kind: str  # "child_protection_plan" | "looked_after"
    la_code: str
    since: date | None


@dataclass(frozen=True, slots=True)
class RelationshipFact:
    """``person_id`` is the ``kind`` (parent / carer / partner) of ``related_person_id``."""

    person_id: int
    related_person_id: int
    kind: str
    since: date | None


@dataclass(frozen=True, slots=True)
class Member:
    person_id: int
    age: int | None
    joined: date | None
    flags: frozenset[str] = frozenset()
    flag_details: tuple[FlagFact, ...] = ()
    school_urn: str | None = None

    @property
    def role(self) -> str:
        """``child`` (under 18), ``adult``, or ``unknown_age`` (no date of birth)."""
        if self.age is None:
            return "unknown_age"
        return "child" if self.age < CHILD_UNDER else "adult"


@dataclass(frozen=True, slots=True)
class HouseholdSnapshot:
    household_id: int
    uprn: str
    la_code: str
    as_of: date
    members: tuple[Member, ...] = field(default_factory=tuple)
    relationships: tuple[RelationshipFact, ...] = ()

    def member(self, person_id: int) -> Member | None:
        return next((m for m in self.members if m.person_id == person_id), None)

    def relationships_to(self, person_id: int) -> dict[int, tuple[str, ...]]:
        """Each other member's relationship to ``person_id``, seen from ``person_id``:
        ``parent`` (the member is their parent), ``child`` (the member is their child),
        ``carer``, ``cared_for``, ``partner``."""
        found: dict[int, list[str]] = {}
        inverse = {"parent": "child", "carer": "cared_for", "partner": "partner"}
        for r in self.relationships:
            if r.related_person_id == person_id and r.person_id != person_id:
                found.setdefault(r.person_id, []).append(r.kind)
            elif r.person_id == person_id and r.related_person_id != person_id:
                found.setdefault(r.related_person_id, []).append(inverse.get(r.kind, r.kind))
        return {p: tuple(sorted(set(kinds))) for p, kinds in found.items()}
