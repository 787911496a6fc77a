"""Rule files load, validate and version; the evaluator is pure and explains itself."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml
from tests.factories import NOW

from lookout.household.snapshot import HouseholdSnapshot, Member
from lookout.rules.evaluator import TriggerEvent, evaluate
from lookout.rules.model import RuleError, compile_rule, load_rules
from lookout.settings import PROJECT_ROOT

RULES = load_rules(PROJECT_ROOT / "rules")
RULE_ONE = PROJECT_ROOT / "rules" / "adult-substance-misuse-ed.yaml"


def trigger(age: int | None, reasons: list[str]) -> TriggerEvent:
    return TriggerEvent(
        1,
        "urn:x",
        "e1",
        "uk.lookout.health.ed_attendance.v1",
        NOW,
        {"presenting_reasons": reasons},
        1,
        age,
    )


def household(*members: Member) -> HouseholdSnapshot:
    return HouseholdSnapshot(9, "100023336956", "E09000012", date(2026, 11, 20), members)


def test_starter_rule_fires_and_explains() -> None:
    [candidate] = evaluate(
        RULES, trigger(30, ["alcohol"]), household(Member(1, 30, None), Member(2, 6, None))
    )
    assert candidate.recipient_key == "children_services:E09000012"
    assert candidate.children == (2,)
    assert candidate.explanation["rule"]["version"] == RULES[0].version


def test_admission_reasons_field_is_understood() -> None:
    event = TriggerEvent(
        1, "urn:x", "e1", "uk.lookout.health.admission.v1", NOW, {"reasons": ["substance"]}, 1, 40
    )
    assert evaluate(RULES, event, household(Member(2, 1, None)))


@pytest.mark.parametrize(
    ("age", "reasons", "members"),
    [
        (17, ["alcohol"], [Member(2, 6, None)]),
        (30, ["injury"], [Member(2, 6, None)]),
        (30, ["alcohol"], [Member(2, 18, None)]),
        (30, ["alcohol"], [Member(1, 30, None)]),
    ],
)
def test_starter_rule_does_not_fire(age: int, reasons: list[str], members: list[Member]) -> None:
    assert evaluate(RULES, trigger(age, reasons), household(*members)) == []


def test_version_changes_with_content_only() -> None:
    content = yaml.safe_load(RULE_ONE.read_text())
    same = compile_rule(dict(reversed(list(content.items()))))
    changed = compile_rule({**content, "severity": "urgent"})
    assert same.version == RULES[0].version
    assert changed.version != RULES[0].version


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"severity": "apocalyptic"}, "severity"),
        ({"unknown_field": 1}, "unknown_field"),
        ({"trigger": {"types": ["not a type"], "description": "x"}}, "not an event type"),
        (
            {
                "trigger": {
                    "types": ["uk.lookout.health.admission.v1"],
                    "description": "x",
                    "condition": "data.(",
                }
            },
            "trigger.condition",
        ),
    ],
)
def test_bad_rules_are_refused_with_a_useful_message(
    change: dict[str, object], message: str
) -> None:
    content = {**yaml.safe_load(RULE_ONE.read_text()), **change}
    with pytest.raises(RuleError, match=message):
        compile_rule(content, path=Path("rules/bad.yaml"))
