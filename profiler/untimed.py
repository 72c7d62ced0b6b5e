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
from dataclasses import dataclass
from typing import Any, Callable

import torch


UNTIMED_THREADS_ENV = "JPEGAI_UNTIMED_THREADS"   # a fixed number, for tests and for shared machines


# A core counts as idle where other processes used less than this share of it over the window.
IDLE_SHARE = 0.7
# The window is the time since this process's previous estimate (one untimed step, ~0.1–1 s); older or
# shorter than these, a fresh window of SAMPLE_S is taken (a worker's first untimed step).
MIN_WINDOW_S, MAX_WINDOW_S, SAMPLE_S = 0.1, 5.0, 0.05


@dataclass(frozen=True)
class CpuSample:
    """What the kernel had counted at one moment: each core's busy time since boot (/proc/stat: user,
    nice, system, irq, softirq, steal) and this process's own CPU time (every thread), in seconds."""

    at: float
    busy_s: dict[int, float]
    own_s: float


def cpu_sample() -> CpuSample | None:
    """Now's counters, or None where /proc/stat cannot be read (not Linux)."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        with open("/proc/stat", encoding="ascii") as fh:
            lines = fh.readlines()
    except (OSError, ValueError, AttributeError):
        return None
    busy: dict[int, float] = {}
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and len(fields) >= 8:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
            busy[int(name[3:])] = (user + nice + system + irq + softirq + steal) / ticks
    t = os.times()
    return CpuSample(time.monotonic(), busy, t.user + t.system)


def idle_cores(before: CpuSample, after: CpuSample, cores) -> int:
    """How many of `cores` other processes left idle between the two samples: a core counts where they
    used less than 1 − IDLE_SHARE of it. This process's own CPU time is not theirs (its previous step's
    threads were busy on these cores and are free for the next one); at least one (this process's own)."""
    window = after.at - before.at
    cores = sorted(int(c) for c in cores)
    if window <= 0 or not cores:
        return 1
    used = sum(after.busy_s.get(c, 0.0) - before.busy_s.get(c, 0.0) for c in cores)
    others = max(0.0, used - (after.own_s - before.own_s)) / window      # in cores
    return max(1, min(len(cores), int(len(cores) - others + 1 - IDLE_SHARE)))


_last_sample: CpuSample | None = None


def untimed_threads() -> int:
    """The cores this process may run on (its CPU affinity: the runner's untimed cores, and a timing
    slot's core while no one holds it) less those other processes kept busy since this process last
    asked (/proc/stat, about one untimed step ago; a 50 ms sample where that is stale). The 1-minute load
    average used before lagged by a minute: the last rate point's untimed work ran on one thread while
    the slot's core had long been idle, and a machine shared with other work needs the opposite. Threads
    beyond the idle cores make every step slower (measured on a 2-core machine at load 4: MS-SSIM of a
    768×512 picture 0.5–0.8 s at 1 thread, 2.2–3.7 s at 2). `JPEGAI_UNTIMED_THREADS` sets the number."""
    global _last_sample
    fixed = os.environ.get(UNTIMED_THREADS_ENV, "")
    if fixed.strip().isdigit() and int(fixed) > 0:
        return int(fixed)
    try:
        cores = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = list(range(max(1, os.cpu_count() or 1)))
    now, before = cpu_sample(), _last_sample
    if now is None:     # no /proc/stat: the load average, this process counted as one
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):
            busy = 0.0
        return max(1, min(len(cores), int(len(cores) - busy + 1.5)))
    if before is None or not MIN_WINDOW_S <= now.at - before.at <= MAX_WINDOW_S:
        time.sleep(SAMPLE_S)
        before, now = now, cpu_sample() or now
    _last_sample = now
    return idle_cores(before, now, cores)


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
