"""``may_trigger`` is what lets the pipeline skip the snapshot and history of an event no
rule can raise an alert for: it must never leave out a rule that ``evaluate`` would fire,
and evaluating only the rules it keeps must give exactly what evaluating all of them does."""

from __future__ import annotations

from datetime import UTC, datetime

from benchmarks import evaluator_bench
from benchmarks.workload import Generator

from lookout.population import generate
from lookout.rules.evaluator import evaluate, may_trigger
from lookout.rules.model import load_rules
from lookout.settings import PROJECT_ROOT

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
RULES = load_rules(PROJECT_ROOT / "rules")


def test_evaluating_only_the_rules_that_may_trigger_gives_the_same_candidates() -> None:
    gen = Generator(generate(3_000, seed=6, as_of=NOW.date()), seed=36, now=NOW, prefix="mt")
    skipped = fired = 0
    for case in evaluator_bench.prepare(gen, RULES, 1_500):
        subject = case.snapshot.member(case.event.subject_person_id or 0)
        # The subject's flags on the day: the fewest a caller can pass (it passes every
        # kind ever held).
        flags = frozenset(f.kind for f in subject.flag_details) if subject else frozenset()
        kept = may_trigger(RULES, case.event, flags)
        everything = evaluate(RULES, case.event, case.snapshot, case.history)
        assert {c.rule.id for c in everything} <= {r.id for r in kept}
        assert evaluate(kept, case.event, case.snapshot, case.history) == everything
        skipped += not kept
        fired += bool(everything)
    # Both kinds of case are there: events no rule may raise, and events that raise one.
    assert skipped > 100
    assert fired > 10


def test_a_flagged_subject_keeps_the_rule_that_asks_for_the_flag() -> None:
    gen = Generator(generate(3_000, seed=6, as_of=NOW.date()), seed=36, now=NOW, prefix="mf")
    # An attendance of a child over 2 for no alcohol or substance: only the rule for
    # flagged children could fire.
    case = next(
        c
        for c in evaluator_bench.prepare(gen, RULES, 400)
        if c.event.type == "uk.lookout.health.ed_attendance.v1"
        and 2 <= (c.event.subject_age or 0) < 18
        and not {"alcohol", "substance"} & set(c.event.data["presenting_reasons"])
    )
    assert may_trigger(RULES, case.event, frozenset()) == []
    kept = may_trigger(RULES, case.event, frozenset({"looked_after"}))
    assert [r.id for r in kept] == ["cp-child-unscheduled-care"]
