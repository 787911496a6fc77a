"""The fault harness's short form (the long form is ``make faults``): the same program,
with fewer events and faults, must find nothing lost and nothing doubled.

It starts its own PostgreSQL and broker (it restarts PostgreSQL and pauses the broker, so
it cannot share the session's), SIGKILLs workers mid-batch and right after a commit,
forces rebalances, and compares with the replay engine; see ``benchmarks/faults.py``.
"""

from __future__ import annotations

import subprocess
import sys

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
