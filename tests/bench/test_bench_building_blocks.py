"""The benchmarks' building blocks do what ``make bench`` relies on (no timings here):
the workload is valid per the catalogue except for its deliberate faults, and the
evaluator benchmark prepares cases the real rules evaluate."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
from benchmarks import evaluator_bench
from benchmarks.workload import DUPLICATE_RATE, INVALID_RATE, UNREGISTERED, Generator, events

from lookout.ingest.catalogue import Catalogue
from lookout.ingest.validation import Invalid, Reason, validate
from lookout.population import generate
from lookout.rules.evaluator import evaluate
from lookout.rules.model import load_rules
from lookout.settings import PROJECT_ROOT

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def test_workload_is_valid_except_its_deliberate_faults() -> None:
    gen = Generator(generate(2_000, seed=5, as_of=NOW.date()), seed=5, now=NOW)
    messages = list(events(gen, 3_000))
    catalogue = Catalogue.load(PROJECT_ROOT / "schemas")
    outcomes = [
        validate(
            value,
            catalogue=catalogue,
            max_bytes=256 * 1024,
            now=NOW,
            max_skew=timedelta(minutes=5),
        )
        for _, value in messages
    ]
    invalid = [o for o in outcomes if isinstance(o, Invalid)]
    assert {o.reason for o in invalid} <= {
        Reason.invalid_identifier,
        Reason.unknown_type,
        Reason.not_json,
    }
    assert 0 < len(invalid) < 3 * INVALID_RATE * len(messages)
    assert len(outcomes) - len(invalid) > 0.95 * len(messages)
    duplicates = len(messages) - len(set(messages))
    assert 0 < duplicates < 3 * DUPLICATE_RATE * len(messages)
    sources = Counter(orjson.loads(v)["source"] for _, v in messages if v.endswith(b"}"))
    assert UNREGISTERED in sources
    kinds = {orjson.loads(v)["type"] for _, v in messages if v.endswith(b"}")}
    assert set(catalogue.types) - kinds <= {"uk.lookout.event.retraction.v1"}


def test_evaluator_cases_run_against_the_rule_files() -> None:
    gen = Generator(generate(3_000, seed=6, as_of=NOW.date()), seed=6, now=NOW)
    rules = load_rules(PROJECT_ROOT / "rules")
    cases = evaluator_bench.prepare(gen, rules, 200)
    triggers = {t for r in rules for t in r.spec.trigger.types}
    assert len(cases) == 200
    assert all(c.event.type in triggers for c in cases)
    assert all(c.snapshot.member(c.event.subject_person_id or 0) for c in cases)
    for case in cases:
        evaluate(rules, case.event, case.snapshot, case.history)
