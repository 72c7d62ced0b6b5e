"""Peak memory: resident set of the worker process (CPU), the CUDA caching allocator, and NVML.

CPU peaks come from the kernel's high-water mark (VmHWM), reset before each measured call by writing
5 to /proc/self/clear_refs (Linux ≥ 4.0), so each figure is the peak *of that call*, not of the process.
Where that is not possible the figure is the process's lifetime peak (getrusage) and says so
(`per_call: false`). Each peak is given absolute and above the worker's baseline once the model is
loaded, which is what a CPU-only decoder needs beyond the interpreter, torch and its own weights.

GPU: `torch.cuda.max_memory_allocated` / `max_memory_reserved` after garbage collection, an emptied
cache and a reset (the caching allocator: absolute, so the weights and cuBLAS/cuDNN workspaces allocated
earlier are in it; `above_start_mib` is the part's own), NVML's device-level view found by torch's UUID
(used memory with the CUDA context, the driver's reservation and other processes; the SM clock; the
compute processes on the device), and the minimum memory a model needs (`min_cuda_memory`,
MIN_MEMORY_DEFINITION): the smallest cap on the allocator's reserved memory under which the call still
succeeds, bisected between an uncapped trial's peak allocated and peak reserved memory.
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
    """Start a part's allocator peak: garbage of earlier calls collected and the cache emptied first, so
    neither `max_reserved` nor NVML's used memory carries blocks an earlier call left cached."""
    import torch

    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)


def cuda_peak_end(device, start_allocated: int | None = None) -> dict:
    """The part's peaks. `max_allocated_mib` is absolute: it includes everything allocated through the
    caching allocator before the part (the model's weights, cuBLAS/cuDNN workspaces torch allocated for
    earlier calls); `above_start_mib` is the peak minus what was allocated when the part began."""
    import torch

    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    out = {"max_allocated_mib": peak / MIB, "max_reserved_mib": torch.cuda.max_memory_reserved(device) / MIB}
    if start_allocated is not None:
        out["above_start_mib"] = max(0, peak - start_allocated) / MIB
    return out


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


NVML_CLOCK_SM = 1


def _handle_by_uuid(nvml, uuid: str):
    """NVML's handle of the device whose UUID torch reports (`get_device_properties(d).uuid`, printed
    without NVML's "GPU-"/"MIG-" prefix); nvmlDeviceGetHandleByUUID takes GPU and MIG UUIDs alike."""
    uuid = str(uuid)
    candidates = [uuid] if uuid.startswith(("GPU-", "MIG-")) else ["GPU-" + uuid, "MIG-" + uuid, uuid]
    last = None
    for c in candidates:
        for arg in (c, c.encode()):
            try:
                return nvml.nvmlDeviceGetHandleByUUID(arg)
            except Exception as exc:   # NVMLError_NotFound, or a str/bytes mismatch of the binding
                last = exc
    raise LookupError(f"no NVML device with UUID {uuid} ({type(last).__name__}: {last})")


def nvml_all_used_mib() -> dict[str, float] | None:
    """Used memory of every NVML device, by UUID: read before the worker's CUDA context exists, so the
    context's own memory can be told apart later. Needs no CUDA call (NVML only). None without NVML."""
    with _nvml_session() as nvml:
        if nvml is None:
            return None
        out = {}
        try:
            for i in range(nvml.nvmlDeviceGetCount()):
                h = nvml.nvmlDeviceGetHandleByIndex(i)
                out[_text(nvml.nvmlDeviceGetUUID(h))] = nvml.nvmlDeviceGetMemoryInfo(h).used / MIB
        except Exception:
            return out or None
        return out


def nvml_snapshot(uuid: str | None, index: int | None = None) -> dict:
    """NVML's view of the worker's device: found by torch's UUID (else by `index`, the old mapping through
    CUDA_VISIBLE_DEVICES), its used and total memory (device level: the CUDA context, the driver's
    reservation and other processes included), the SM clock, and the compute processes on it.

    Always a dict: {"error": why} where NVML is absent or the device cannot be found.
    `other_processes` are the pids NVML lists besides this one; inside a container NVML's pids are the
    host's, so the worker's own may be listed as another (`own_pid_listed` says whether it was seen).
    """
    with _nvml_session() as nvml:
        if nvml is None:
            return {"error": "NVML not available (nvidia-ml-py not installed or no driver library)"}
        try:
            if uuid:
                handle, mapped_by = _handle_by_uuid(nvml, uuid), "uuid"
            elif index is not None and index < nvml.nvmlDeviceGetCount():
                handle, mapped_by = nvml.nvmlDeviceGetHandleByIndex(index), "index"
            else:
                return {"error": "the device has no UUID from torch and no NVML index"}
            out = {"mapped_by": mapped_by,
                   **parse_nvml_memory(nvml.nvmlDeviceGetName(handle), nvml.nvmlDeviceGetMemoryInfo(handle))}
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
        try:
            out["sm_clock_mhz"] = int(nvml.nvmlDeviceGetClockInfo(handle, NVML_CLOCK_SM))
        except Exception:
            out["sm_clock_mhz"] = None
        try:
            pids = sorted({int(p.pid) for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle)})
            out["processes"] = pids
            out["own_pid_listed"] = os.getpid() in pids
            out["other_processes"] = [p for p in pids if p != os.getpid()]
        except Exception:
            out["processes"] = None
        driver = _nvml_driver(nvml)
        if driver is not None:
            out["driver"] = driver
        return out


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


class BisectionFailed(Exception):
    """The minimum-memory search could not finish; the message says why (it goes into not_measured)."""


ALLOC_FAILURES = ("out of memory", "ALLOC_FAILED", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED")


def is_cuda_oom(exc: BaseException) -> bool:
    """An allocation failure under the limit: torch's OutOfMemoryError, or a library (cuBLAS, cuDNN)
    that reports its own failed workspace allocation as a RuntimeError."""
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and any(s in str(exc) for s in ALLOC_FAILURES))


class TorchCuda:
    """The few allocator calls the bisection makes, on torch.cuda (a fake stands in for it in tests)."""

    def __init__(self, device):
        import torch

        self.torch, self.device = torch, device

    def total(self) -> int:
        return self.torch.cuda.get_device_properties(self.device).total_memory

    def settle(self) -> None:
        """Finish queued work, collect garbage and return cached blocks to the driver."""
        gc.collect()
        self.torch.cuda.synchronize(self.device)
        self.torch.cuda.empty_cache()

    def allocated(self) -> int:
        return self.torch.cuda.memory_allocated(self.device)

    def reset_peaks(self) -> None:
        self.torch.cuda.reset_peak_memory_stats(self.device)

    def peaks(self) -> tuple[int, int]:
        self.torch.cuda.synchronize(self.device)
        return (self.torch.cuda.max_memory_allocated(self.device), self.torch.cuda.max_memory_reserved(self.device))

    def set_limit(self, limit: int | None) -> None:
        """Cap the allocator's *reserved* memory at `limit` bytes (None: the whole device)."""
        fraction = 1.0 if limit is None else min(1.0, limit / self.total())
        self.torch.cuda.set_per_process_memory_fraction(fraction, self.device)


MIN_MEMORY_DEFINITION = (
    "the smallest cap on the caching allocator's reserved memory (torch.cuda.set_per_process_memory_fraction) "
    "under which the call succeeds, with the model's weights and anything else allocated before the call "
    "inside the cap, under the PYTORCH_CUDA_ALLOC_CONF stated beside it; excludes the CUDA context and "
    "anything allocated outside torch's allocator; within resolution_mib above the largest failing cap")


def min_cuda_memory(call: Callable[[], Any], device, resolution: int = 2 * MIB, cuda: Any = None) -> dict:
    """The minimum allocator budget (bytes) under which `call()` succeeds on `device` (see
    MIN_MEMORY_DEFINITION).

    First an unlimited trial, after the cache was emptied: its peak *allocated* memory is the lower bound
    (the cap limits reserved memory, which is never below allocated) and its peak *reserved* memory the
    upper bound (the same allocations fitted in it); if that bound fails under the cap, twice it and then
    the whole device are tried. Each trial settles (garbage collected, cache emptied), caps the allocator,
    runs the call; an allocation failure (`is_cuda_oom`) means it does not fit. After every trial the
    allocated memory must be back where it started, else the trials are not independent and the search
    stops. Raises BisectionFailed with the reason where it cannot finish; any other exception of the call
    propagates. The cap is lifted afterwards. `cuda`: the allocator interface (TorchCuda by default).
    """
    cuda = TorchCuda(device) if cuda is None else cuda
    total = cuda.total()
    cuda.settle()
    start = cuda.allocated()

    runs = [0]

    def run(limit: int | None) -> bool:
        runs[0] += 1
        cuda.settle()
        cuda.set_limit(limit)
        try:
            try:
                call()
                cuda.settle()
                ok = True
            except Exception as exc:
                if not is_cuda_oom(exc):
                    raise
                ok = False
        finally:
            cuda.set_limit(None)
        cuda.settle()
        left = cuda.allocated()
        if left != start:
            raise BisectionFailed(f"after a trial at {'no cap' if limit is None else f'{limit / MIB:.0f} MiB'} "
                                  f"{(left - start) / MIB:+.1f} MiB stay allocated (the call keeps or frees memory "
                                  "across calls): the trials are not independent")
        return ok

    try:
        cuda.reset_peaks()
        if not run(None):
            raise BisectionFailed("the call does not fit on the whole device without a cap")
        peak_allocated, peak_reserved = cuda.peaks()
        low = max(resolution, (peak_allocated // resolution) * resolution)
        bounds = []
        for cand in (peak_reserved, 2 * peak_reserved, total):
            cand = min(total, -(-cand // resolution) * resolution)
            if cand >= low and cand not in bounds:
                bounds.append(cand)
        known: dict[int, bool] = {}
        high = None
        for cand in bounds:
            known[cand] = run(cand)
            if known[cand]:
                high = cand
                break
        if high is None:
            raise BisectionFailed("the call does not fit under a cap of its own unlimited reserved peak "
                                  f"({peak_reserved / MIB:.0f} MiB), twice it, nor the whole device")
        failed = [c for c, ok in known.items() if not ok]
        if failed:   # monotone: the answer lies above the largest bound that failed
            low = max(failed)
        result = bisect_minimum(lambda lim: known[lim] if lim in known else run(lim), low, high, resolution)
    finally:
        cuda.set_limit(None)
        cuda.settle()
    trials = runs[0]
    largest_failing = result.largest_failing
    return {"min_mib": result.minimum / MIB,
            "largest_failing_mib": None if largest_failing is None else largest_failing / MIB,
            "resolution_mib": resolution / MIB, "trials": trials, "device_total_mib": total / MIB,
            "unlimited_allocated_mib": peak_allocated / MIB, "unlimited_reserved_mib": peak_reserved / MIB,
            "allocated_before_mib": start / MIB, "low_mib": low / MIB, "high_mib": high / MIB,
            "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF"), "definition": MIN_MEMORY_DEFINITION}


def cpu_count() -> int:
    return os.cpu_count() or 1
