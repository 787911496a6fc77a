"""The household as it was on one date: plain data handed to the pure rule evaluator."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


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
class Member:
    person_id: int
    age: int | None
    joined: date | None
    flags: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class HouseholdSnapshot:
    household_id: int
    uprn: str
    la_code: str
    as_of: date
    members: tuple[Member, ...] = field(default_factory=tuple)

    def member(self, person_id: int) -> Member | None:
        return next((m for m in self.members if m.person_id == person_id), None)
