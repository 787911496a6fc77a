"""The evaluator's results are pinned, explanations included, so that a change to how it
evaluates (its hot path is tuned for speed) cannot change what it decides or says.

Two sets, in ``data/evaluator_golden.json``: the first 800 cases of the evaluator
benchmark (trigger events of the benchmark workload over a small fixed population, with
their household snapshots and history), where three rules fire; and every rule test case
in ``rules/tests/`` replayed, where all six do. Each candidate or alert is pinned by its
rule, household, recipient and children, with the SHA-256 of its explanation (the JSON in
the order the evaluator builds it).

The file was written by the evaluator before its hot path was optimised. A deliberate
change of results (a rule or its test cases edited, the workload or the population
generator changed, a new fact in explanations) rewrites it with
``LOOKOUT_WRITE_GOLDEN=1 pytest tests/rules/test_evaluator_golden.py``; read the diff
before committing it.
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from typing import Any

import orjson
from benchmarks import evaluator_bench
from benchmarks.workload import Generator

from lookout.population import generate
from lookout.rules.evaluator import evaluate
from lookout.rules.model import load_rules
from lookout.rules.replay import replay
from lookout.rules.testcases import case_events, load_case_file
from lookout.settings import PROJECT_ROOT

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
GOLDEN = PROJECT_ROOT / "tests" / "rules" / "data" / "evaluator_golden.json"
RULES = load_rules(PROJECT_ROOT / "rules")


def _digest(explanation: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(explanation)).hexdigest()


def _benchmark_cases() -> list[dict[str, Any]]:
    gen = Generator(generate(3_000, seed=6, as_of=NOW.date()), seed=36, now=NOW, prefix="eval")
    cases = evaluator_bench.prepare(gen, RULES, 800)
    found = []
    for index, case in enumerate(cases):
        candidates = evaluate(RULES, case.event, case.snapshot, case.history)
        found += [
            {
                "case": index,
                "rule": c.rule.id,
                "household_id": c.household_id,
                "recipient_key": c.recipient_key,
                "children": list(c.children),
                "summary": c.summary,
                "explanation": _digest(c.explanation),
            }
            for c in candidates
        ]
    return found


def _rule_test_cases() -> list[dict[str, Any]]:
    found = []
    for path in sorted((PROJECT_ROOT / "rules" / "tests").glob("*.yaml")):
        file = load_case_file(path)
        for case in file.cases:
            found += [
                {
                    "file": path.name,
                    "case": case.name,
                    "rule": a.rule_id,
                    "household": list(a.household),
                    "recipient_key": a.recipient_key,
                    "children": sorted(a.children),
                    "explanation": _digest(a.explanation),
                }
                for a in replay(case_events(file, case), RULES, now=file.now)
            ]
    return found


def _pinned(name: str, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    golden = orjson.loads(GOLDEN.read_bytes()) if GOLDEN.exists() else {}
    if os.environ.get("LOOKOUT_WRITE_GOLDEN") == "1":
        golden[name] = found
        GOLDEN.write_bytes(
            orjson.dumps(golden, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        )
    expected: list[dict[str, Any]] = golden[name]
    return expected


def test_the_benchmark_cases_give_the_pinned_candidates() -> None:
    found = _benchmark_cases()
    expected = _pinned("benchmark_cases", found)
    assert len({c["case"] for c in expected}) > 50
    assert found == expected


def test_the_rule_test_cases_give_the_pinned_alerts() -> None:
    found = _rule_test_cases()
    expected = _pinned("rule_test_cases", found)
    assert {a["rule"] for a in expected} == {r.id for r in RULES}
    assert found == expected
