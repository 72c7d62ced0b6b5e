"""CPU and GPU timing of one call, and the statistics reported for it.

CPU: `time.perf_counter` around the call. GPU: CUDA events recorded on the current stream with a
`torch.cuda.synchronize()` before the start and after the end, so queued kernels are inside the figure.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch


@dataclass(frozen=True)
class TimingStats:
    n: int
    median_s: float
    min_s: float
    max_s: float
    q1_s: float
    q3_s: float
    values_s: tuple[float, ...]

    @property
    def iqr_s(self) -> float:
        return self.q3_s - self.q1_s

    @property
    def spread(self) -> float:
        """(max − min) / median."""
        return (self.max_s - self.min_s) / self.median_s if self.median_s > 0 else 0.0

    def ms_per_megapixel(self, width: int, height: int) -> float:
        return self.median_s * 1000.0 / (width * height / 1e6)

    def to_dict(self) -> dict:
        return {"n": self.n, "median_s": self.median_s, "min_s": self.min_s, "max_s": self.max_s,
                "q1_s": self.q1_s, "q3_s": self.q3_s, "iqr_s": self.iqr_s, "values_s": list(self.values_s)}

    @classmethod
    def from_dict(cls, d: dict | None) -> "TimingStats | None":
        if d is None:
            return None
        return cls(d["n"], d["median_s"], d["min_s"], d["max_s"], d["q1_s"], d["q3_s"], tuple(d["values_s"]))


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(Q1, median, Q3) by linear interpolation between closest ranks (numpy's default 'linear')."""
    v = sorted(values)
    if len(v) == 1:
        return v[0], v[0], v[0]

    def q(p: float) -> float:
        pos = p * (len(v) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(v) - 1)
        return v[lo] + (v[hi] - v[lo]) * (pos - lo)

    return q(0.25), q(0.5), q(0.75)


def summarize(values: list[float]) -> TimingStats:
    if not values:
        raise ValueError("no timings to summarise")
    q1, med, q3 = quartiles(values)
    assert abs(med - statistics.median(values)) < 1e-12
    return TimingStats(len(values), med, min(values), max(values), q1, q3, tuple(values))


def time_cpu(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Wall time of `repeats` calls of fn; returns the times and the last output."""
    times = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def time_cuda(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """GPU-inclusive time of `repeats` calls: CUDA events, synchronised before and after."""
    times = []
    out = None
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        out = fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000.0)
    return times, out
