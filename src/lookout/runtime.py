"""Interpreter settings of Lookout's long-running processes (the worker and the API).

Garbage collection. A worker batch allocates hundreds of thousands of short-lived objects
(decoded events, rows, snapshots), an API page thousands. With the interpreter's default
thresholds (a young-generation collection every 700 net allocations, promoting survivors
towards full collections that walk the whole heap) the cyclic collector took about a
quarter of the worker's CPU, and its pauses made most of the API's p99
(BENCHMARKS.md, "Garbage collection"). Reference counting still frees almost everything
at once; only reference cycles wait for the next collection, which now comes every 50,000
allocations, and what exists at start-up (the imported modules; in the API, the app) is
frozen: never walked again.
"""

from __future__ import annotations

import gc

GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Freeze what exists now and raise the collection thresholds. Call once, at the end
    of a process's start-up (a process, not a test: frozen objects are never collected)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
