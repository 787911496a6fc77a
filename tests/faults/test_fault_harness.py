"""The fault harness's short form (the long form is ``make faults``): the same program,
with fewer events and faults, must find nothing lost and nothing doubled.

It starts its own PostgreSQL and broker (it restarts PostgreSQL and pauses the broker, so
it cannot share the session's), SIGKILLs workers mid-batch and right after a commit,
forces rebalances, and compares with the replay engine; see ``benchmarks/faults.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.faults import INVALID_REASONS, Figures, generate, merge_results

from lookout.settings import PROJECT_ROOT

SHORT_FORM = ["--events", "1000", "--kills", "3", "--seed", "11", "--batch", "100"]


def test_short_form_finds_nothing_lost_and_nothing_doubled() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.faults", *SHORT_FORM],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "OK: nothing lost, nothing doubled" in run.stdout
    assert "kills (SIGKILL)         3 " in run.stdout


def test_the_figures_are_merged_into_results_json_keeping_other_keys(tmp_path: Path) -> None:
    """Other benchmarks own the other keys of benchmarks/results.json."""
    results = tmp_path / "results.json"
    results.write_text('{"population_persons": 1000001, "fault_kills": 1}\n')
    merge_results(
        Figures(events=50, kills=3, rebalances=4, alerts_expected=5, alerts_duplicated=0),
        results,
    )
    merged = json.loads(results.read_text())
    assert merged["population_persons"] == 1000001
    assert (merged["fault_events"], merged["fault_kills"], merged["fault_rebalances"]) == (50, 3, 4)
    assert (merged["fault_alerts_expected"], merged["fault_alerts_missing"]) == (5, 0)
    assert merged["fault_alerts_duplicated"] == 0


def test_the_stream_is_seeded_and_has_every_kind_of_message() -> None:
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    first, again = generate(600, 5, now), generate(600, 5, now)
    assert [i.raw for i in first.items] == [i.raw for i in again.items]
    kinds = {i.expect for i in first.items}
    assert kinds == {"valid", *INVALID_REASONS}
    assert len(first.items) == 600
    assert len({i.raw for i in first.items if i.expect == "valid"}) < sum(
        i.expect == "valid" for i in first.items
    )  # exact duplicates
