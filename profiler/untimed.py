"""Untimed work with every core the worker may use; timed work with `timing.threads`.

The suite's own work around the timed calls — counting at extra resolutions, the cross-check against
fvcore/ptflops, the interoperability proxy's decodes, the quality metrics — is never timed, so it runs
with torch's intra-op threads raised to the idle cores this process may run on (`untimed_threads`). The
threads are set back to `timing.threads` when the step ends, whatever it raised, so every timed call
(and every warm-up) keeps the conditions' thread count.

`untimed(step, fn, timed_threads)` returns the step's value and its record ({"threads", "seconds"}, the
report's `UntimedStep`); records of repeated steps (one per picture) add up with `add_records`.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Callable

import torch


UNTIMED_THREADS_ENV = "JPEGAI_UNTIMED_THREADS"   # a fixed number, for tests and for shared machines


def untimed_threads() -> int:
    """The cores this process may run on (its CPU affinity; the CPU count where affinity is unknown),
    less those other processes keep busy (the 1-minute load average, this process counted as one):
    on a machine shared with other work, threads beyond the idle cores make every step slower
    (measured on a 2-core machine at load 4: MS-SSIM of a 768×512 picture 0.5–0.8 s at 1 thread,
    2.2–3.7 s at 2). `JPEGAI_UNTIMED_THREADS` sets the number instead."""
    fixed = os.environ.get(UNTIMED_THREADS_ENV, "")
    if fixed.strip().isdigit() and int(fixed) > 0:
        return int(fixed)
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cores = max(1, os.cpu_count() or 1)
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):
        busy = 0.0
    return max(1, min(cores, int(cores - busy + 1.5)))


@contextlib.contextmanager
def more_threads(timed_threads: int, threads: int | None = None):
    """torch's intra-op threads raised to `threads` (default: `untimed_threads()`) inside the block and
    back to `timed_threads` after it, also when the block raises. Yields the threads in force."""
    n = max(int(timed_threads), untimed_threads() if threads is None else int(threads))
    torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(int(timed_threads))


def untimed(step: str, fn: Callable[[], Any], timed_threads: int, threads: int | None = None
            ) -> tuple[Any, dict]:
    """(fn(), {"threads": …, "seconds": …}) with `fn` run under `more_threads`. A raising `fn` raises
    (the threads are back all the same)."""
    t0 = time.perf_counter()
    with more_threads(timed_threads, threads) as used:
        value = fn()
    return value, {"threads": used, "seconds": round(time.perf_counter() - t0, 4)}


def add_records(*records: dict | None) -> dict | None:
    """One record of several runs of a step: seconds added, the most threads any of them used, calls."""
    got = [r for r in records if r]
    if not got:
        return None
    return {"threads": max(r["threads"] for r in got), "seconds": round(sum(r["seconds"] for r in got), 4),
            "calls": sum(r.get("calls", 1) for r in got)}
