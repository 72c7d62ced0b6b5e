"""CPU and GPU timing of one call, and the statistics reported for it.

CPU: `time.perf_counter` around the call and nothing else (the loop, the lambda and the list append are
outside the timed region; `benchmarks/timing.py` measures what is left against a bare loop).
GPU: CUDA events recorded on the current stream, with a `torch.cuda.synchronize()` before the start
and after the end, so every queued kernel of the call is inside the figure and none of an earlier one.

Statistics: median, min, max, first and third quartile (numpy's default 'linear' interpolation), IQR
and N, per image; per rate point the same statistics over the per-image medians, plus milliseconds per
megapixel (time ÷ the image's W × H), so images of different sizes compare.
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

    def to_dict(self, width: int | None = None, height: int | None = None) -> dict:
        d = {"n": self.n, "median_s": self.median_s, "min_s": self.min_s, "max_s": self.max_s,
             "q1_s": self.q1_s, "q3_s": self.q3_s, "iqr_s": self.iqr_s, "values_s": list(self.values_s)}
        if width and height:
            d["ms_per_mpx"] = self.ms_per_megapixel(width, height)
        return d

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


def rate_point_stats(per_image: list[tuple[dict, int, int]]) -> dict:
    """Statistics of one rate point from its images' timing dicts `(stats dict, width, height)`.

    `seconds`: median/min/max/IQR over the per-image medians (N = number of images).
    `ms_per_mpx`: the same over each image's median ÷ megapixels. `runs`: timed calls in all.
    """
    if not per_image:
        raise ValueError("no images to summarise")
    medians = [d["median_s"] for d, _, _ in per_image]
    per_mpx = [d["median_s"] * 1000.0 / (w * h / 1e6) for d, w, h in per_image]
    secs, mpx = summarize(medians), summarize(per_mpx)
    return {"images": len(per_image), "runs": sum(int(d["n"]) for d, _, _ in per_image),
            "seconds": {k: v for k, v in secs.to_dict().items() if k != "values_s"},
            "ms_per_mpx": {"n": mpx.n, "median": mpx.median_s, "min": mpx.min_s, "max": mpx.max_s,
                           "q1": mpx.q1_s, "q3": mpx.q3_s, "iqr": mpx.iqr_s}}


def time_cpu(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Wall time of `repeats` calls of fn; returns the times and the last output."""
    times = []
    out = None
    clock = time.perf_counter
    for _ in range(repeats):
        t0 = clock()
        out = fn()
        t1 = clock()
        times.append(t1 - t0)
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


def gpu_settings(cudnn_benchmark: bool, allow_tf32: bool) -> dict:
    """Apply the GPU timing switches of profile.toml and return what is in force.

    Both are off by default: cudnn.benchmark picks kernels by timing them on the first call of each
    shape (the chosen kernel, and so the time, can differ run to run); TF32 rounds float32 matmul and
    convolution inputs to a 10-bit mantissa, which changes both speed and reconstructions.
    """
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.backends.cudnn.deterministic = not cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32
    return {"cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}
