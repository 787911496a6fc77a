"""The garbage-collection tuning of the worker and API processes (``lookout.runtime``),
checked in a child interpreter so that this test process keeps its own settings."""

from __future__ import annotations

import subprocess
import sys

from lookout.runtime import GC_THRESHOLDS


def test_tune_gc_freezes_start_up_objects_and_raises_the_thresholds() -> None:
    script = (
        "import gc, lookout.worker, lookout.runtime as r; before = gc.get_threshold(); "
        "r.tune_gc(); "
        "print(before, gc.get_threshold(), gc.get_freeze_count() > 10_000)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert out == f"(700, 10, 10) {GC_THRESHOLDS} True"
