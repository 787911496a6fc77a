"""The pure rule evaluator on one core: no database, no broker, no I/O.

Trigger events come from the benchmark workload (:mod:`benchmarks.workload`) over a
synthetic population; each is paired with the snapshot of its subject's household as the
pipeline would build it (members with ages on the event's date, the date each joined,
flags in force with their local authority, schools, relationships) and with the history
the pipeline would pass (the history-window events of the household's members: the
workload's own, plus, for half the triggers, a few recent ED attendances, admissions or
domestic-abuse incidents of members so that the history conditions have work to do).
Rules are every ``*.yaml`` in ``rules/``, loaded as the worker loads them.

``rule_evaluations_per_s`` counts trigger events evaluated against the whole rule set per
second (``evaluate(rules, event, snapshot, history)`` calls). ``cpu_us_per_evaluation`` is
the process CPU time per call, which a loaded host distorts far less than the wall clock;
compare code changes with it.

Standalone (no database, no broker; generates its own population)::

    python -m benchmarks.evaluator_bench [--persons N] [--cases N] [--seconds S] [--seed N]
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from benchmarks.workload import Generator, events
from lookout.household.snapshot import (
    FlagFact,
    HouseholdSnapshot,
    Member,
    RelationshipFact,
    age_on,
)
from lookout.ingest.validation import person_refs
from lookout.population import SynthPeriod, generate
from lookout.rules.evaluator import HistoryEvent, TriggerEvent, evaluate
from lookout.rules.model import Rule, load_rules
from lookout.settings import PROJECT_ROOT

LONDON = ZoneInfo("Europe/London")
HISTORY_KINDS = (
    "health.ed_attendance",
    "mixed.child_ed_attendance",
    "health.admission",
    "police.domestic_abuse_incident",
    "education.absence",
    "charity.concern",
)


@dataclass(frozen=True, slots=True)
class Case:
    event: TriggerEvent
    snapshot: HouseholdSnapshot
    history: tuple[HistoryEvent, ...]


def _snapshot(
    gen: Generator, periods: dict[int, list[SynthPeriod]], household: int, on: date
) -> HouseholdSnapshot:
    pop = gen.pop
    h = pop.households[household]
    flags: dict[int, list[FlagFact]] = defaultdict(list)
    for m in h.members:
        for f in periods.get(m, ()):
            if f.start <= on and (f.end is None or f.end > on):
                flags[m].append(FlagFact(f.kind, f.holder, f.start))
    members = tuple(
        Member(
            person_id=m + 1,
            age=age_on(pop.persons[m].birth_date, on),
            joined=h.since,
            flags=frozenset(x.kind for x in flags[m]),
            flag_details=tuple(flags[m]),
            school_urn=gen.school_of.get(m),
        )
        for m in sorted(h.members)
    )
    return HouseholdSnapshot(
        household_id=household + 1,
        uprn=h.uprn,
        la_code=h.la_code,
        as_of=on,
        members=members,
        relationships=tuple(
            RelationshipFact(a + 1, b + 1, kind, h.since) for a, b, kind in h.relationships
        ),
    )


def prepare(gen: Generator, rules: Sequence[Rule], count: int) -> list[Case]:
    """``count`` trigger events with their snapshots and history (see the module doc)."""
    triggers = {t for r in rules for t in r.spec.trigger.types}
    history_types = {t for r in rules for h in r.spec.history for t in h.types}
    window = timedelta(days=max((r.max_window_days for r in rules), default=0))
    by_nhs = {p.nhs_number: p.index for p in gen.pop.persons}
    periods: dict[int, list[SynthPeriod]] = defaultdict(list)
    for f in gen.pop.flags:
        periods[f.person].append(f)
    past: dict[int, list[HistoryEvent]] = defaultdict(list)  # by person index
    pending: list[tuple[dict[str, Any], int]] = []
    pk = 0
    for _, raw in events(gen, count * 4):
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        refs = [r for _, role, r in person_refs(doc["type"], doc["data"]) if role != "related"]
        people = [by_nhs[r["nhs_number"]] for r in refs if r.get("nhs_number") in by_nhs]
        if not people:
            continue
        pk += 1
        time_ = datetime.fromisoformat(doc["time"])
        if doc["type"] in history_types:
            for p in people:
                past[p].append(
                    HistoryEvent(
                        pk, p + 1, doc["source"], doc["id"], doc["type"], time_, doc["data"]
                    )
                )
        if doc["type"] in triggers and len(pending) < count:
            pending.append((doc | {"pk": pk}, people[0]))
    cases = []
    for doc, subject in pending:
        at = datetime.fromisoformat(doc["time"])
        on = at.astimezone(LONDON).date()
        household = gen.household_of[subject]
        snapshot = _snapshot(gen, periods, household, on)
        members = [m.person_id - 1 for m in snapshot.members]
        history = [
            h for m in {*members, subject} for h in past.get(m, ()) if at - window < h.time <= at
        ]
        if gen.rng.random() < 0.5 and history_types:
            for _ in range(3):
                kind = gen.rng.choice(HISTORY_KINDS)
                extra = gen.event(kind)
                if extra["type"] not in history_types:
                    continue
                pk += 1
                when = at - timedelta(days=gen.rng.uniform(0, max(window.days, 1)))
                who = gen.rng.choice(members) + 1
                history.append(
                    HistoryEvent(
                        pk, who, extra["source"], extra["id"], extra["type"], when, extra["data"]
                    )
                )
        event = TriggerEvent(
            event_pk=doc["pk"],
            source=doc["source"],
            event_id=doc["id"],
            type=doc["type"],
            time=at,
            data=doc["data"],
            subject_person_id=subject + 1,
            subject_age=age_on(gen.pop.persons[subject].birth_date, on),
        )
        cases.append(Case(event, snapshot, tuple(history)))
    return cases


def run(gen: Generator, *, cases: int, seconds: float) -> dict[str, float]:
    """Evaluate the prepared cases round and round for ``seconds``; one core, no I/O."""
    rules = load_rules(PROJECT_ROOT / "rules")
    prepared = prepare(gen, rules, cases)
    for case in prepared[:200]:  # warm up (CEL programs, caches)
        evaluate(rules, case.event, case.snapshot, case.history)
    done = candidates = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for case in prepared:
            candidates += len(evaluate(rules, case.event, case.snapshot, case.history))
        done += len(prepared)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    return {
        "rules": len(rules),
        "cases": len(prepared),
        "evaluations": done,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "evaluations_per_s": done / elapsed,
        "cpu_us_per_evaluation": cpu / done * 1e6,
        "evaluations_per_cpu_s": done / cpu,
        "candidates_per_evaluation": candidates / done,
        "mean_history_events": sum(len(c.history) for c in prepared) / max(len(prepared), 1),
        "mean_members": sum(len(c.snapshot.members) for c in prepared) / max(len(prepared), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--persons", type=int, default=100_000, help="synthetic population")
    parser.add_argument("--cases", type=int, default=5_000, help="trigger events prepared")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to evaluate")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--date",
        type=date.fromisoformat,
        default=date(2026, 11, 1),
        help="the population's date and the workload's 'now' (fixed, so runs compare)",
    )
    args = parser.parse_args()
    now = datetime.combine(args.date, datetime.min.time(), UTC) + timedelta(hours=12)
    pop = generate(args.persons, args.seed, as_of=args.date)
    # seed + 30 and prefix "eval" as in benchmarks.run
    result = run(
        Generator(pop, args.seed + 30, now, prefix="eval"), cases=args.cases, seconds=args.seconds
    )
    for key, value in result.items():
        print(f"{key}: {round(value, 2) if isinstance(value, float) else value}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average (1, 5, 15 min) at the end: {load}")


if __name__ == "__main__":
    main()
