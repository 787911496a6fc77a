"""A CEL condition is handed only the fields of ``data`` it reads (converting the whole
event to CEL was most of an evaluation's cost): which fields those are, and that the
result is the same as with the whole of ``data``, also when it comes from the
condition's memo of earlier results."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from tests.factories import NOW

from lookout.household.snapshot import HouseholdSnapshot, Member
from lookout.rules.evaluator import TriggerEvent, evaluate
from lookout.rules.model import Condition, _compile, compile_rule, data_fields, load_rules
from lookout.settings import PROJECT_ROOT

RULE_EXPRESSIONS = sorted(
    {
        c.source
        for r in load_rules(PROJECT_ROOT / "rules")
        for c in (r.condition, *r.history_conditions)
        if c is not None
    }
)


@pytest.mark.parametrize(
    ("expression", "fields", "presence_only"),
    [
        ('data.change == "moved_in"', {"change"}, set()),
        ("data . days >= 5", {"days"}, set()),
        ("has(data.days) && data.days >= 5", {"days"}, set()),
        ("has(data.persons_involved) || data.x", {"persons_involved", "x"}, {"persons_involved"}),
        ("has( data . a )", {"a"}, {"a"}),
        ("has(data.a.b)", {"a"}, set()),  # reads a's value
        ("x.has(data.a)", {"a"}, set()),  # not the has() macro
        ("true", set(), set()),
        ("data.xs.exists(d, d.y == 1)", {"xs"}, set()),
        # string literals and comments are not code
        ('"data[0]" == data.a', {"a"}, set()),
        (r'"\"data" == data.a', {"a"}, set()),
        (r'r"\" == data.a', {"a"}, set()),  # a raw string takes no escape
        ("'''data[0] ''' + data.a == ''", {"a"}, set()),
        ("b'data' == data.a", {"a"}, set()),
        ('data.a == 1 // data["b"] or size(data)\n || data.c == 2', {"a", "c"}, set()),
    ],
)
def test_the_fields_a_condition_reads(
    expression: str, fields: set[str], presence_only: set[str]
) -> None:
    assert data_fields(expression) == (frozenset(fields), frozenset(presence_only))


@pytest.mark.parametrize(
    "expression",
    [
        'data["change"] == "moved_in"',
        "size(data) > 2",
        '"days" in data',
        "data == {}",
        "data.xs.exists(data, data == 1)",  # a comprehension variable named data
        "data.size() > 1",  # a call on data, not a field
        'data.exists(k, k == "days")',
        'data.all(k, k != "a") || data.x',
        "[data].exists(d, d.a == 1)",
        "data",
    ],
)
def test_a_condition_that_reads_data_otherwise_gets_all_of_it(expression: str) -> None:
    assert data_fields(expression) is None
    condition = _compile(expression, "test")
    assert condition is not None
    assert condition.fields is None
    data = {"change": "moved_in", "days": 3}
    assert condition.context(data) == {"data": data}


KEYS = ("presenting_reasons", "reasons", "persons_involved", "change", "days", "a", "b", "x")
WORDS = ("alcohol", "substance", "injury", "mental_health", "moved_in", "other", "")
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.sampled_from(WORDS),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner),
    max_leaves=8,
)
EXTRA = [
    'has(data.days) && data.days >= 5 || data.change == "moved_in"',
    "has(data.a) && has(data.a.b)",
    'data.x.exists(v, v == "alcohol")',
    "has(data.persons_involved) ? data.persons_involved == null : data.b",
]


def _outcome(condition: Condition, context: dict[str, Any]) -> tuple[str, Any]:
    try:
        return ("value", condition.program.execute(context))
    except Exception as exc:  # the evaluator counts any error as no match
        return ("error", type(exc).__name__)


@pytest.mark.parametrize("expression", RULE_EXPRESSIONS + EXTRA)
@settings(max_examples=100, deadline=None)
@given(data=st.dictionaries(st.sampled_from(KEYS), JSON, max_size=6))
def test_the_fields_handed_give_the_result_of_the_whole_data(
    expression: str, data: dict[str, Any]
) -> None:
    condition = _compile(expression, "test")
    assert condition is not None
    assert condition.fields is not None
    assert _outcome(condition, condition.context(data)) == _outcome(condition, {"data": data})


# Compiled once, so that each condition's memo fills over the examples.
MEMOISED = {e: _compile(e, "test") for e in RULE_EXPRESSIONS + EXTRA}


@pytest.mark.parametrize("expression", RULE_EXPRESSIONS + EXTRA)
@settings(max_examples=200, deadline=None)
@given(data=st.dictionaries(st.sampled_from(KEYS), JSON, max_size=6))
def test_a_memoised_result_is_the_result_of_the_whole_data(
    expression: str, data: dict[str, Any]
) -> None:
    condition = MEMOISED[expression]
    assert condition is not None
    kind, value = _outcome(condition, {"data": data})
    try:
        got: tuple[str, Any] = ("value", condition.holds(data))
    except Exception as exc:  # as _outcome: the error's class
        got = ("error", type(exc).__name__)
    assert got == ((kind, value is True) if kind == "value" else (kind, value))


def test_values_equal_in_python_but_not_in_type_never_share_a_result() -> None:
    condition = _compile("data.change == 1", "test")
    assert condition is not None
    # Only text (and lists of text) is memoised: True == 1 == 1.0 in Python, not in CEL.
    assert [condition.memo_key({"change": v}) for v in (True, 1, 1.0, None)] == [None] * 4
    assert condition.memo_key({"change": ["a"]}) == (("a",),)
    assert condition.memo_key({"change": "a"}) == ("a",)
    assert condition.memo_key({}) == (None,)


def test_a_condition_that_fails_on_an_event_does_not_match_and_is_counted() -> None:
    content = yaml.safe_load(
        (PROJECT_ROOT / "rules" / "adult-substance-misuse-ed.yaml").read_text()
    )
    content["trigger"]["condition"] = "data.days >= 5"  # ED attendances have no days
    rule = compile_rule(content)
    home = HouseholdSnapshot(
        9, "100023336956", "E09000012", date(2026, 11, 20), (Member(2, 6, None),)
    )

    def event(data: dict[str, Any]) -> TriggerEvent:
        return TriggerEvent(1, "urn:x", "e1", rule.spec.trigger.types[0], NOW, data, 1, 30)

    def errors() -> float:
        return REGISTRY.get_sample_value("lookout_rule_errors_total", {"rule": rule.id}) or 0.0

    before = errors()
    assert evaluate([rule], event({"presenting_reasons": ["alcohol"]}), home) == []
    assert errors() == before + 1
    assert evaluate([rule], event({"days": 6}), home)
    assert errors() == before + 1
