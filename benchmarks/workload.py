"""Realistic event streams over a synthetic population, for the benchmarks.

:func:`events` yields Kafka messages (key, value) as agencies publish them: moves and new
relationships from the council, ED attendances and admissions from the hospital, school
enrolments, absences and exclusions, domestic-abuse incidents from the police, protection
plans and looked-after periods, voluntary-sector concerns. Every event names persons of the
population by their identifiers (NHS number, UPN for pupils, names, date of birth,
postcode), so the worker links them to the bulk-loaded graph. A few per cent are exact
re-sends (duplicates) and a few per thousand are invalid (a bad check digit, broken JSON,
an unknown type, an unregistered source), as on a real feed.

The mix is a benchmark's guess at a council-sized feed, not a statistic: health and
education events dominate, graph events (residence, relationship) are a fifth.
Deterministic by seed; event times are spread over the 30 days before ``now`` (the
alerting horizon), a tenth of them older (history).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from lookout.population import AGENCIES, Population, SynthPerson

CHARITY = "urn:lookout:agency:synth-charity"
UNREGISTERED = "urn:lookout:agency:not-registered"
SOURCES = {**AGENCIES, "charity": CHARITY}

# (kind, share of the valid, non-duplicate events)
MIX: tuple[tuple[str, float], ...] = (
    ("health.ed_attendance", 0.24),
    ("health.admission", 0.06),
    ("person.residence", 0.14),
    ("person.relationship", 0.05),
    ("education.enrolment", 0.05),
    ("education.absence", 0.12),
    ("education.exclusion", 0.04),
    ("police.domestic_abuse_incident", 0.06),
    ("social_care.child_protection_plan", 0.03),
    ("social_care.looked_after", 0.02),
    ("charity.concern", 0.05),
    ("mixed.child_ed_attendance", 0.14),  # an ED attendance of a child
)
INVALID_KEY = b"-bad-"  # in the Kafka key of every deliberately invalid message
DUPLICATE_RATE = 0.03
INVALID_RATE = 0.005
CLINICAL = ("alcohol", "substance", "injury", "self_harm", "assault", "mental_health", "other")
CLINICAL_WEIGHTS = (0.06, 0.04, 0.35, 0.05, 0.08, 0.07, 0.35)


@dataclass(slots=True)
class Generator:
    """Stateful event maker over one population (ids stay unique across calls)."""

    pop: Population
    seed: int
    now: datetime
    prefix: str = "bench"
    rng: random.Random = field(init=False)
    serial: int = 0
    household_of: list[int] = field(init=False)
    school_of: dict[int, str] = field(init=False)
    children: list[int] = field(init=False)
    adults: list[int] = field(init=False)
    pupils: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)  # noqa: S311 - synthetic data
        self.household_of = [0] * len(self.pop.persons)
        for h in self.pop.households:
            for m in h.members:
                self.household_of[m] = h.index
        self.school_of = {e.person: e.kind for e in self.pop.enrolments}
        today = self.now.date()
        self.children = [p.index for p in self.pop.persons if _age(p, today) < 18]
        self.adults = [p.index for p in self.pop.persons if _age(p, today) >= 18]
        self.pupils = [c for c in self.children if c in self.school_of] or self.children

    # -- building blocks ---------------------------------------------------------------

    def ref(self, index: int) -> dict[str, Any]:
        p = self.pop.persons[index]
        ref: dict[str, Any] = {
            "nhs_number": p.nhs_number,
            "given_name": p.given_name,
            "family_name": p.family_name,
            "birth_date": p.birth_date.isoformat(),
            "postcode": p.postcode,
        }
        if p.upn:
            ref["upn"] = p.upn
        return ref

    def address(self, household: int) -> dict[str, str]:
        h = self.pop.households[household]
        return {"uprn": h.uprn, "la_code": h.la_code}

    def when(self) -> datetime:
        """Mostly within the 30-day alerting horizon; one in ten older (history)."""
        if self.rng.random() < 0.1:
            back = timedelta(days=self.rng.uniform(30, 365))
        else:
            back = timedelta(seconds=self.rng.uniform(60, 30 * 86_400))
        return (self.now - back).replace(microsecond=0)

    def envelope(
        self, kind: str, source: str, data: dict[str, Any], at: datetime
    ) -> dict[str, Any]:
        self.serial += 1
        return {
            "specversion": "1.0",
            "id": f"{self.prefix}-{self.seed}-{self.serial}",
            "source": source,
            "type": f"uk.lookout.{kind}.v1",
            "time": at.isoformat(),
            "subject": f"{self.prefix}-ref-{self.serial}",
            "datacontenttype": "application/json",
            "data": data,
        }

    def pick(self, people: list[int]) -> int:
        return people[self.rng.randrange(len(people))]

    def reasons(self) -> list[str]:
        first = self.rng.choices(CLINICAL, CLINICAL_WEIGHTS)[0]
        if self.rng.random() < 0.15:
            second = self.rng.choices(CLINICAL, CLINICAL_WEIGHTS)[0]
            return sorted({first, second})
        return [first]

    # -- one event of each kind ----------------------------------------------------------

    def event(self, kind: str) -> dict[str, Any]:
        rng, at = self.rng, self.when()
        on = at.date()
        data: dict[str, Any]
        if kind in ("health.ed_attendance", "mixed.child_ed_attendance", "health.admission"):
            who = self.pick(self.children if kind.startswith("mixed") else self.adults)
            if kind == "health.admission":
                data = {
                    "patient": self.ref(who),
                    "site_ods_code": "RQXM1",
                    "reasons": self.reasons(),
                }
                return self.envelope(kind, SOURCES["hospital"], data, at)
            data = {
                "patient": self.ref(who),
                "site_ods_code": "RQXM1",
                "presenting_reasons": self.reasons(),
                "attendance_ref": f"ED-{self.serial}",
            }
            return self.envelope("health.ed_attendance", SOURCES["hospital"], data, at)
        if kind == "person.residence":
            who = self.pick(self.adults if rng.random() < 0.7 else self.children)
            if rng.random() < 0.3:  # moves out of their home
                data = {
                    "person": self.ref(who),
                    "address": self.address(self.household_of[who]),
                    "change": "moved_out",
                    "date": on.isoformat(),
                }
            else:  # joins another household of the population
                home = rng.randrange(len(self.pop.households))
                data = {
                    "person": self.ref(who),
                    "address": self.address(home),
                    "change": "moved_in",
                    "date": on.isoformat(),
                }
            return self.envelope(kind, SOURCES["council"], data, at)
        if kind == "person.relationship":
            h = self.pop.households[self.household_of[self.pick(self.children)]]
            adult, child = h.members[0], h.members[-1]
            if adult == child:
                child = self.pick(self.children)
            data = {
                "person": self.ref(adult),
                "related_person": self.ref(child),
                "relationship": rng.choice(("parent", "carer")),
                "start_date": (on - timedelta(days=rng.randint(0, 2000))).isoformat(),
            }
            return self.envelope(kind, SOURCES["council"], data, at)
        if kind.startswith("education."):
            who = self.pick(self.pupils)
            urn = self.school_of.get(who, "100001")
            if kind == "education.enrolment":
                data = {
                    "pupil": self.ref(who),
                    "school_urn": urn,
                    "start_date": on.isoformat(),
                    "dsl_org_id": f"school-{urn}",
                }
            elif kind == "education.absence":
                data = {
                    "pupil": self.ref(who),
                    "school_urn": urn,
                    "threshold": rng.choice(("persistent", "severe")),
                    "attendance_rate": round(rng.uniform(0.3, 0.89), 2),
                    "period_start": (on - timedelta(days=60)).isoformat(),
                    "period_end": on.isoformat(),
                }
            else:
                data = {
                    "pupil": self.ref(who),
                    "school_urn": urn,
                    "kind": "suspension" if rng.random() < 0.9 else "permanent",
                    "start_date": on.isoformat(),
                    "days": rng.randint(1, 5),
                }
            return self.envelope(kind, SOURCES["schools"], data, at)
        if kind == "police.domestic_abuse_incident":
            home = self.household_of[self.pick(self.adults)]
            members = self.pop.households[home].members
            today = on
            grown = [m for m in members if _age(self.pop.persons[m], today) >= 18] or members
            kids = [m for m in members if m not in grown]
            involved = [{"person": self.ref(grown[0]), "role": "victim"}]
            if len(grown) > 1:
                involved.append({"person": self.ref(grown[1]), "role": "suspect"})
            data = {
                "incident_ref": f"CAD-{self.serial}",
                "address": self.address(home),
                "persons_involved": involved,
                "children_present": [self.ref(k) for k in kids[:2]],
                "children_resident": [self.ref(k) for k in kids],
            }
            return self.envelope(kind, SOURCES["police"], data, at)
        if kind.startswith("social_care."):
            who = self.pick(self.children)
            la = self.pop.households[self.household_of[who]].la_code
            looked_after = kind.endswith("looked_after")
            change = rng.choice(("started", "ceased" if looked_after else "ended"))
            data = {"child": self.ref(who), "la_code": la, "change": change, "date": on.isoformat()}
            return self.envelope(kind, SOURCES["council"], data, at)
        if kind == "charity.concern":
            who = self.pick(self.adults)
            data = {
                "person": self.ref(who),
                "concern_categories": [rng.choice(("neglect", "substance", "housing", "other"))],
                "address": self.address(self.household_of[who]),
            }
            return self.envelope(kind, CHARITY, data, at)
        raise ValueError(f"unknown kind {kind!r}")

    def invalid(self) -> bytes:
        """One of the ways a real feed goes wrong."""
        roll = self.rng.random()
        event = self.event("health.ed_attendance")
        if roll < 0.4:  # a bad NHS number check digit
            nhs = event["data"]["patient"]["nhs_number"]
            event["data"]["patient"]["nhs_number"] = nhs[:9] + str((int(nhs[9]) + 1) % 10)
        elif roll < 0.6:
            event["type"] = "uk.lookout.health.unknown.v1"
        elif roll < 0.8:
            event["source"] = UNREGISTERED
        else:
            return orjson.dumps(event)[:-7]  # truncated JSON
        return orjson.dumps(event)


def _age(p: SynthPerson, on: date) -> int:
    years = on.year - p.birth_date.year
    return years - ((on.month, on.day) < (p.birth_date.month, p.birth_date.day))


KINDS = tuple(k for k, _ in MIX)
WEIGHTS = tuple(w for _, w in MIX)


def events(gen: Generator, count: int) -> Iterator[tuple[bytes, bytes]]:
    """``count`` Kafka messages (key, value): the mix above, duplicates and invalid ones."""
    rng = gen.rng
    recent: list[tuple[bytes, bytes]] = []
    for _ in range(count):
        roll = rng.random()
        if roll < DUPLICATE_RATE and recent:
            yield recent[rng.randrange(len(recent))]
            continue
        if roll < DUPLICATE_RATE + INVALID_RATE:
            yield gen.prefix.encode() + INVALID_KEY + str(gen.serial).encode(), gen.invalid()
            continue
        event = gen.event(rng.choices(KINDS, WEIGHTS)[0])
        message = (event["subject"].encode(), orjson.dumps(event))
        if len(recent) < 1000:
            recent.append(message)
        else:
            recent[rng.randrange(1000)] = message
        yield message


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
