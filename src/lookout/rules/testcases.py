"""Rule test cases: ``rules/tests/<rule id>.yaml`` — given events, expected alerts.

A file names its people and addresses once; events refer to them as ``@label``. Times
are RFC 3339, or relative to the file's ``now`` (``now``, ``now-3d``, ``now-2h``,
``now-30m``). Each case runs on its own (a fresh, empty graph). The format is documented
in ``rules/README.md``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lookout.rules.model import Rule, RuleError
from lookout.rules.replay import ReplayedAlert, replay

RELATIVE = re.compile(r"^now(?:-(\d+)([dhm]))?$")
UNITS = {"d": "days", "h": "hours", "m": "minutes"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventSpec(_Strict):
    type: str = Field(description="e.g. health.ed_attendance (uk.lookout. and .v1 are added)")
    source: str = "urn:lookout:agency:test"
    time: str
    data: dict[str, Any]
    id: str | None = None


class Expected(_Strict):
    household: str
    recipient: Literal["children_services", "school"] = "children_services"
    # The recipient's local authority when it is not the household's (a plan held elsewhere).
    la_code: str | None = None
    # The school's URN, for ``recipient: school``.
    school: str | None = None
    children: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _school_has_urn(self) -> Expected:
        if (self.recipient == "school") != (self.school is not None):
            raise ValueError("give school: URN exactly when recipient is school")
        return self


class Case(_Strict):
    name: str
    events: list[EventSpec]
    expect: list[Expected]


class CaseFile(_Strict):
    rule: str
    now: datetime
    people: dict[str, dict[str, Any]] = Field(default_factory=dict)
    addresses: dict[str, dict[str, str]] = Field(default_factory=dict)
    cases: list[Case] = Field(min_length=1)


@dataclass(frozen=True)
class Outcome:
    file: Path
    case: str
    passed: bool
    expected: frozenset[tuple[str, str, frozenset[str]]]
    got: frozenset[tuple[str, str, frozenset[str]]]


def load_case_file(path: Path) -> CaseFile:
    try:
        return CaseFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, ValidationError) as exc:
        raise RuleError(f"{path}: {exc}") from None


def _time(value: str, now: datetime) -> str:
    match = RELATIVE.match(value)
    if not match:
        return datetime.fromisoformat(value).isoformat()
    amount, unit = match.groups()
    delta = timedelta(**{UNITS[unit]: int(amount)}) if amount else timedelta()
    return (now - delta).isoformat()


def _resolve(value: Any, file: CaseFile) -> Any:
    if isinstance(value, str) and value.startswith("@"):
        label = value[1:]
        if label in file.people:
            return dict(file.people[label])
        if label in file.addresses:
            return dict(file.addresses[label])
        raise RuleError(f"unknown label {value!r}: declare it under people or addresses")
    if isinstance(value, dict):
        return {k: _resolve(v, file) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, file) for v in value]
    return value


def case_events(file: CaseFile, case: Case) -> list[dict[str, Any]]:
    """The case's events as agencies would publish them (CloudEvents)."""
    counter = itertools.count(1)
    events = []
    for spec in case.events:
        n = next(counter)
        events.append(
            {
                "specversion": "1.0",
                "id": spec.id or f"{case.name}-{n}",
                "source": spec.source,
                "type": f"uk.lookout.{spec.type}.v1",
                "time": _time(spec.time, file.now),
                "subject": f"case-ref-{n}",
                "datacontenttype": "application/json",
                "data": _resolve(spec.data, file),
            }
        )
    return events


def _label_keys(file: CaseFile) -> dict[str, str]:
    """Each person label's first strong identifier, as the replay names children."""
    found = {}
    for label, person in file.people.items():
        for scheme in ("nhs_number", "upn"):
            if scheme in person:
                found[label] = f"{scheme}:{person[scheme]}"
                break
    return found


def expected_set(file: CaseFile, case: Case) -> frozenset[tuple[str, str, frozenset[str]]]:
    keys = _label_keys(file)
    out = set()
    for e in case.expect:
        address = file.addresses[e.household]
        if e.recipient == "school":
            recipient = f"school:{e.school}"
        else:
            recipient = f"{e.recipient}:{e.la_code or address['la_code']}"
        out.add((address["uprn"], recipient, frozenset(keys.get(c, c) for c in e.children)))
    return frozenset(out)


def alert_set(
    alerts: Sequence[ReplayedAlert], rule_id: str
) -> frozenset[tuple[str, str, frozenset[str]]]:
    return frozenset(
        (a.household[0], a.recipient_key, a.children) for a in alerts if a.rule_id == rule_id
    )


def run_file(path: Path, rules: Mapping[str, Rule]) -> list[Outcome]:
    file = load_case_file(path)
    if file.rule not in rules:
        raise RuleError(f"{path}: no rule {file.rule!r} in the rule set")
    outcomes = []
    for case in file.cases:
        got = alert_set(
            replay(case_events(file, case), list(rules.values()), now=file.now), file.rule
        )
        expected = expected_set(file, case)
        outcomes.append(Outcome(path, case.name, got == expected, expected, got))
    return outcomes
