"""Peak memory: resident set of the worker process (CPU), the CUDA caching allocator, and NVML.

CPU peaks come from the kernel's high-water mark (VmHWM), reset before each measured call by writing
5 to /proc/self/clear_refs (Linux ≥ 4.0), so each figure is the peak *of that call*, not of the process.
Where that is not possible the figure is the process's lifetime peak (getrusage) and says so.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

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
    return kib / 1024 if kib is not None else None


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
    above_baseline_mib: float     # peak minus RSS just before the call (model loaded)
    per_call: bool                # True when the high-water mark was reset for this call

    def to_dict(self) -> dict:
        return {"peak_mib": self.peak_mib, "above_baseline_mib": self.above_baseline_mib, "per_call": self.per_call}


class CpuPeak:
    """`with CpuPeak() as p: call()` then `p.result`."""

    def __enter__(self) -> "CpuPeak":
        self._per_call = reset_peak_rss()
        self._baseline = rss_mib() or 0.0
        return self

    def __exit__(self, *exc) -> None:
        peak = peak_rss_mib()
        self.result = PeakRss(peak, max(0.0, peak - self._baseline), self._per_call)


def cuda_peak_begin(device) -> None:
    import torch

    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)


def cuda_peak_end(device) -> dict:
    import torch

    torch.cuda.synchronize(device)
    return {"max_allocated_mib": torch.cuda.max_memory_allocated(device) / MIB,
            "max_reserved_mib": torch.cuda.max_memory_reserved(device) / MIB}


def nvml_device_used_mib(index: int = 0) -> dict | None:
    """Device-level used memory (includes the CUDA context) from NVML, or None where NVML is absent.

    Uses only the core calls both the maintained nvidia-ml-py and the old pynvml 8.0.4 provide.
    """
    try:
        import pynvml
    except Exception:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        if index >= pynvml.nvmlDeviceGetCount():
            return None
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        info = pynvml.nvmlDeviceGetMemoryInfo(handle)
        name = pynvml.nvmlDeviceGetName(handle)
        return {"name": name.decode() if isinstance(name, bytes) else str(name),
                "used_mib": info.used / MIB, "total_mib": info.total / MIB}
    except Exception:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def cpu_count() -> int:
    return os.cpu_count() or 1
