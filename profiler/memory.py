"""Peak memory: resident set of the worker process (CPU), the CUDA caching allocator, and NVML.

CPU peaks come from the kernel's high-water mark (VmHWM), reset before each measured call by writing
5 to /proc/self/clear_refs (Linux ≥ 4.0), so each figure is the peak *of that call*, not of the process.
Where that is not possible the figure is the process's lifetime peak (getrusage) and says so
(`per_call: false`). Each peak is given absolute and above the worker's baseline once the model is
loaded, which is what a CPU-only decoder needs beyond the interpreter, torch and its own weights.

GPU: `torch.cuda.max_memory_allocated` / `max_memory_reserved` after a reset (the caching allocator,
without the CUDA context), NVML's device-level used memory (with the context, and with anything else on
the device), and the minimum memory a model needs: the smallest allocator limit
(`torch.cuda.set_per_process_memory_fraction`) under which the call still succeeds, found by bisection.
"""

from __future__ import annotations

import gc
import math
import os
import resource
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

MIB = 1024 * 1024


def _status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib() -> float | None:
    kib = _status_kib("VmRSS")
    if kib is None:
        try:
            import psutil

            return psutil.Process().memory_info().rss / MIB
        except Exception:
            return None
    return kib / 1024


def reset_peak_rss() -> bool:
    """Reset the process's peak-RSS high-water mark; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    kib = _status_kib("VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024


@dataclass(frozen=True)
class PeakRss:
    peak_mib: float               # absolute peak RSS of the worker during the call
    above_baseline_mib: float     # peak minus the worker's RSS once the model was loaded
    per_call: bool                # True when the high-water mark was reset for this call
    baseline_mib: float | None = None        # the worker's RSS once the model was loaded
    above_call_start_mib: float | None = None  # peak minus RSS just before the call

    def to_dict(self) -> dict:
        return {"peak_mib": self.peak_mib, "above_baseline_mib": self.above_baseline_mib, "per_call": self.per_call,
                "baseline_mib": self.baseline_mib, "above_call_start_mib": self.above_call_start_mib}


class CpuPeak:
    """`with CpuPeak(baseline_mib) as p: call()` then `p.result`.

    `baseline_mib` is the worker's RSS once the model is loaded (taken once per worker); without it the
    RSS at the start of the call is the baseline.
    """

    def __init__(self, baseline_mib: float | None = None):
        self._model_baseline = baseline_mib

    def __enter__(self) -> "CpuPeak":
        # Collect first so garbage of earlier calls is neither in the baseline nor freed inside the call.
        gc.collect()
        self._start = rss_mib() or 0.0
        self._per_call = reset_peak_rss()
        return self

    def __exit__(self, *exc) -> None:
        peak = peak_rss_mib()
        base = self._model_baseline if self._model_baseline is not None else self._start
        self.result = PeakRss(peak, max(0.0, peak - base), self._per_call, base, max(0.0, peak - self._start))


# -- CUDA caching allocator ---------------------------------------------------------------------------

def cuda_peak_begin(device) -> None:
    import torch

    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)


def cuda_peak_end(device) -> dict:
    import torch

    torch.cuda.synchronize(device)
    return {"max_allocated_mib": torch.cuda.max_memory_allocated(device) / MIB,
            "max_reserved_mib": torch.cuda.max_memory_reserved(device) / MIB}


# -- NVML ---------------------------------------------------------------------------------------------

def nvml_index(torch_index: int, visible_devices: str | None) -> int | None:
    """The NVML index of torch's CUDA device `torch_index`, given CUDA_VISIBLE_DEVICES.

    NVML ignores CUDA_VISIBLE_DEVICES, so torch's device 0 is NVML's device `visible[0]`. With UUIDs or
    MIG names in the variable there is no index to map to (the core NVML calls cannot look them up): None.
    """
    if visible_devices is None or not visible_devices.strip():
        return torch_index
    entries = [e.strip() for e in visible_devices.split(",")]
    try:
        ids = [int(e) for e in entries]
    except ValueError:
        return None
    # CUDA stops at the first invalid (e.g. negative) id.
    valid = []
    for i in ids:
        if i < 0:
            break
        valid.append(i)
    return valid[torch_index] if torch_index < len(valid) else None


def parse_nvml_memory(name: Any, info: Any) -> dict:
    """NVML's device name (bytes in pynvml 8, str in nvidia-ml-py) and memory info → MiB figures."""
    return {"name": name.decode() if isinstance(name, bytes) else str(name),
            "used_mib": info.used / MIB, "total_mib": info.total / MIB}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@contextmanager
def _nvml_session():
    """pynvml, initialised, for the `with` block (shut down after it); None where NVML is absent or fails
    to start. Imported lazily, so a CPU-only run never depends on it."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        yield None
        return
    try:
        yield pynvml
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def nvml_device_used_mib(index: int | None = 0) -> dict | None:
    """Device-level used memory (includes the CUDA context) from NVML, or None where NVML is absent.

    Uses only the core calls both the maintained nvidia-ml-py and the old pynvml 8.0.4 provide.
    """
    if index is None:
        return None
    with _nvml_session() as nvml:
        if nvml is None:
            return None
        try:
            if index >= nvml.nvmlDeviceGetCount():
                return None
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            out = parse_nvml_memory(nvml.nvmlDeviceGetName(handle), nvml.nvmlDeviceGetMemoryInfo(handle))
        except Exception:
            return None
        driver = _nvml_driver(nvml)
        if driver is not None:
            out["driver"] = driver
        return out


def nvml_driver_version() -> str | None:
    with _nvml_session() as nvml:
        return None if nvml is None else _nvml_driver(nvml)


def _nvml_driver(nvml) -> str | None:
    try:
        return _text(nvml.nvmlSystemGetDriverVersion())
    except Exception:
        return None


def nvml_for_torch_device(torch_index: int) -> dict | None:
    return nvml_device_used_mib(nvml_index(torch_index, os.environ.get("CUDA_VISIBLE_DEVICES")))


# -- minimum GPU memory -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bisection:
    minimum: int                  # smallest limit that passed (within `resolution` of the largest failing)
    largest_failing: int | None   # the largest limit that failed (None when even `low` passed)
    trials: tuple[tuple[int, bool], ...]   # (limit, passed) in the order tried


def bisect_minimum(fits: Callable[[int], bool], low: int, high: int, resolution: int) -> Bisection:
    """Smallest integer limit in [low, high] for which `fits(limit)` is true, to within `resolution`.

    `fits` must be monotone (true from some threshold up). `high` is tried first and must pass, else
    ValueError. `low` is tried next: if it passes it is the answer. Then the interval (fail, pass] is
    halved until it is no wider than `resolution`: ⌈log2((high − low) / resolution)⌉ more trials.
    """
    if resolution < 1 or low > high:
        raise ValueError(f"bad bisection interval [{low}, {high}] at resolution {resolution}")
    trials: list[tuple[int, bool]] = []

    def trial(limit: int) -> bool:
        ok = bool(fits(limit))
        trials.append((limit, ok))
        return ok

    if not trial(high):
        raise ValueError(f"the call does not fit even at the upper limit {high}")
    if low == high or trial(low):
        return Bisection(low, None, tuple(trials))
    fail, ok = low, high
    while ok - fail > resolution:
        mid = (fail + ok) // 2
        if trial(mid):
            ok = mid
        else:
            fail = mid
    return Bisection(ok, fail, tuple(trials))


def bisection_trials(low: int, high: int, resolution: int) -> int:
    """Trials `bisect_minimum` needs when `low` fails: high, low, then the halvings."""
    return 2 + max(0, math.ceil(math.log2((high - low) / resolution))) if high > low else 1


def min_cuda_memory(call: Callable[[], Any], device, peak_allocated: int, resolution: int = 2 * MIB) -> dict:
    """The minimum allocator limit (bytes) under which `call()` succeeds on `device`.

    Each trial empties the cache, limits the process with `set_per_process_memory_fraction(limit /
    total)` and runs the call; an out-of-memory error means it does not fit. The search runs between the
    measured peak allocation (below it nothing can fit, so it is the lower end) and the whole device.
    Any other exception is the submission's and propagates. The limit is lifted afterwards. The figure
    excludes the CUDA context, which NVML's used memory includes.
    """
    import torch

    total = torch.cuda.get_device_properties(device).total_memory

    def fits(limit: int) -> bool:
        gc.collect()
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(min(1.0, limit / total), device)
        try:
            call()
            torch.cuda.synchronize(device)
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            gc.collect()
            torch.cuda.empty_cache()

    try:
        low = max(resolution, (peak_allocated // resolution) * resolution)
        result = bisect_minimum(fits, low, total, resolution)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()
    return {"min_mib": result.minimum / MIB, "largest_failing_mib": None if result.largest_failing is None
            else result.largest_failing / MIB, "resolution_mib": resolution / MIB, "trials": len(result.trials),
            "device_total_mib": total / MIB}


def cpu_count() -> int:
    return os.cpu_count() or 1
