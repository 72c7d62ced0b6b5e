"""CPU and GPU timing of one call, and the statistics reported for it.

CPU: `time.perf_counter` around the call and nothing else (the loop, the lambda and the list append are
outside the timed region; `benchmarks/timing.py` measures what is left against a bare loop).
GPU: CUDA events recorded on the current stream, with a `torch.cuda.synchronize()` before the start
and after the end: wall time on the device's current stream (host gaps between kernels included; other
streams only where the call joins them), and beside it the host's `perf_counter` over the same
synchronised window, with a flag where the two differ (`time_cuda_both`, `event_wall_gap`).

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
    q1, _, q3 = quartiles(values)
    # The median by its definition (the middle value, or the mean of the two middle ones): the
    # interpolated one differs from it in the last bits when the values are far apart.
    return TimingStats(len(values), statistics.median(values), min(values), max(values), q1, q3, tuple(values))


def summed(a: dict, b: dict) -> dict:
    """The statistics of two calls made one after the other, from each one's own (`TimingStats.to_dict`):
    every figure the sum of the two (median + median, min + min, …), N the smaller N. The single values
    are not kept: the two were timed apart, so no run of the pair exists to list."""
    q1, q3 = a["q1_s"] + b["q1_s"], a["q3_s"] + b["q3_s"]
    return {"n": min(int(a["n"]), int(b["n"])), "median_s": a["median_s"] + b["median_s"],
            "min_s": a["min_s"] + b["min_s"], "max_s": a["max_s"] + b["max_s"], "q1_s": q1, "q3_s": q3,
            "iqr_s": q3 - q1, "values_s": []}


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
    """Wall time of `repeats` calls of fn; returns the times and the last output.

    The previous output is dropped before the next call, so no call's peak memory holds an extra picture.
    """
    times = []
    out = None
    clock = time.perf_counter
    for _ in range(repeats):
        out = None          # not alive during the next call
        t0 = clock()
        out = fn()
        t1 = clock()
        times.append(t1 - t0)
    return times, out


def time_cuda_both(fn: Callable[[], Any], repeats: int) -> tuple[list[float], list[float], Any]:
    """`repeats` calls on the GPU: (event times, host wall times, last output).

    Event time: CUDA events recorded on the current stream around the call, the whole device synchronised
    before the start and after the end. It is the wall time that passed on *that stream* between the two
    events: idle gaps while the host works between kernels (CPU entropy coding) are inside it, and work
    queued on other streams is inside it only where the call made the current stream wait for it.
    Host wall time: `perf_counter` from after the first synchronisation to after the last one, which
    waits for every stream of the device; a gap between the two (see `event_wall_gap`) flags side
    streams or host work after the last kernel. The previous output is dropped before the next call.
    """
    events, walls = [], []
    out = None
    clock = time.perf_counter
    for _ in range(repeats):
        out = None
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        t0 = clock()
        start.record()
        out = fn()
        end.record()
        torch.cuda.synchronize()
        t1 = clock()
        events.append(start.elapsed_time(end) / 1000.0)
        walls.append(t1 - t0)
    return events, walls, out


def time_cuda(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Event times of `repeats` calls (time_cuda_both without the host wall times)."""
    events, _, out = time_cuda_both(fn, repeats)
    return events, out


GAP_RELATIVE = 0.10
GAP_ABSOLUTE_S = 0.0005


def event_wall_gap(event_median_s: float, wall_median_s: float) -> str:
    """A flag (empty when none) where the event time and the host wall time disagree by more than 10 %
    and 0.5 ms: the event figure then misses work (side streams) or the host did work after the last
    kernel was queued."""
    gap = wall_median_s - event_median_s
    if abs(gap) > GAP_ABSOLUTE_S and abs(gap) > GAP_RELATIVE * max(wall_median_s, 1e-12):
        return (f"event time {event_median_s * 1e3:.2f} ms vs host wall {wall_median_s * 1e3:.2f} ms "
                f"(gap {gap * 1e3:+.2f} ms): work on other streams or host work outside the event window")
    return ""


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
