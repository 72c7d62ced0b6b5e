"""The environment fingerprint recorded in every report: where and with what the figures were measured.

Two halves. `fingerprint()` runs in the profiling process: machine, OS, Python, torch and its build
(CUDA, cuDNN, oneDNN, MKL, OpenMP), GPU and driver, the suite's own dependencies and the hash of the
submission's files. `worker_environment()` runs in each worker, where the figures are measured: threads
actually in use, CPU affinity, thread-related environment variables, and the distributions (with
versions) of every module the submission's code imported; `merge_worker()` folds those into the report.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Iterable

# Packages the suite itself imports (its declared dependencies, with the CompressAI extra).
SUITE_PACKAGES = ("jpegai-profile", "torch", "numpy", "compressai", "torchvision", "fvcore", "ptflops", "psutil",
                  "nvidia-ml-py", "pynvml", "pandas", "rich", "safetensors", "scikit-image", "pillow",
                  "pytorch-msssim", "bjontegaard", "scipy", "matplotlib")

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
              "CUBLAS_WORKSPACE_CONFIG", "PYTORCH_CUDA_ALLOC_CONF")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _physical_cores() -> int | None:
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except Exception:
        return None


def _affinity() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def parse_torch_config(text: str) -> dict:
    """Library versions from `torch.__config__.show()` (a free-text build summary)."""
    patterns = {"mkl": r"Math Kernel Library Version ([^\s]+)",
                "onednn": r"MKL-DNN v([0-9][^\s]*)",
                "openmp": r"OpenMP (\d+)",
                "cpu_capability": r"CPU capability usage: (\w+)",
                "blas": r"BLAS_INFO=([^,\s]+)",
                "cuda": r"CUDA_VERSION=([^,\s]+)",
                "cudnn": r"CUDNN_VERSION=([^,\s]+)"}
    out = {}
    for key, pattern in patterns.items():
        m = re.search(pattern, text)
        out[key] = m.group(1) if m else None
    return out


def _torch_build() -> dict:
    import torch

    build = {"version": torch.__version__, "git": getattr(torch.version, "git_version", None),
             "cuda": torch.version.cuda, "hip": getattr(torch.version, "hip", None),
             "variant": "CUDA" if torch.version.cuda else ("ROCm" if getattr(torch.version, "hip", None) else "CPU"),
             "mkldnn_available": bool(torch.backends.mkldnn.is_available()),
             "mkl_available": bool(torch.backends.mkl.is_available()),
             "openmp_available": bool(torch.backends.openmp.is_available())}
    try:
        build.update({f"{k}_version": v for k, v in parse_torch_config(torch.__config__.show()).items()})
    except Exception:
        pass
    try:
        build["cudnn_runtime"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:
        build["cudnn_runtime"] = None
    return build


def _gpus() -> list[dict]:
    import torch

    from .memory import nvml_driver_version

    if not torch.cuda.is_available():
        return []
    driver = nvml_driver_version()
    gpus = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        gpus.append({"index": i, "name": p.name, "total_mib": p.total_memory / 2**20,
                     "capability": f"{p.major}.{p.minor}", "multiprocessors": p.multi_processor_count,
                     "driver": driver})
    return gpus


def fingerprint(submission_sha256: str | None = None, threads: int | None = None) -> dict:
    import torch

    from .memory import nvml_driver_version

    cuda = torch.cuda.is_available()
    gpus = _gpus()
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_physical_cores": _physical_cores(),
        "cpu_affinity": _affinity(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "torch": torch.__version__,
        "torch_cuda_build": torch.version.cuda,
        "torch_build": _torch_build(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "mkl": bool(torch.backends.mkl.is_available()),
        "threads_configured": threads,
        "cuda_available": cuda,
        "cuda_device_count": torch.cuda.device_count() if cuda else 0,
        "gpu_name": gpus[0]["name"] if gpus else None,
        "gpus": gpus,
        "nvidia_driver": nvml_driver_version() if cuda else None,
        "env": {k: os.environ.get(k) for k in THREAD_ENV},
        "packages": {d: _version(d) for d in SUITE_PACKAGES},
        "submission_files_sha256": submission_sha256,
    }


def host_fingerprint() -> dict:
    """The machine a rate point is measured on, as `RateResult.host` records it: hostname, CPU model and
    the torch build (release, git revision, variant). Taken where the rate point's worker runs (a Dask
    worker's host on a cluster), so one report's rate points can be compared with each other."""
    import socket

    import torch

    return {"hostname": socket.gethostname(), "cpu_model": _cpu_model(), "torch": torch.__version__,
            "torch_git": getattr(torch.version, "git_version", None),
            "torch_variant": ("CUDA" if torch.version.cuda else
                              "ROCm" if getattr(torch.version, "hip", None) else "CPU")}


# -- in the worker ------------------------------------------------------------------------------------

def top_level_modules(names: Iterable[str]) -> set[str]:
    return {n.split(".", 1)[0] for n in names if n and not n.startswith("_")}


@functools.lru_cache(maxsize=1)
def packages_distributions() -> dict[str, list[str]]:
    """`importlib.metadata.packages_distributions()` (0.3–0.6 s: every installed RECORD read), read once per
    process; the zygote reads it before it forks, so its workers have it (the installation does not change
    during a profile)."""
    return metadata.packages_distributions()


def _module_location(mod: str) -> Path | None:
    """Where the imported top-level module `mod` lives: its file, or a namespace package's first folder;
    None where it is not imported or has neither (a built-in module)."""
    module = sys.modules.get(mod)
    where = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", None) or ()), None)
    try:
        return Path(where).resolve() if where else None
    except (OSError, RuntimeError, TypeError):
        return None


def _base(dist: str) -> Path | None:
    try:
        return Path(str(metadata.distribution(dist).locate_file(""))).resolve()
    except Exception:    # noqa: BLE001 — an unreadable installation
        return None


def _holds(dist: str, location: Path) -> bool:
    """Whether one of the files the RECORD of `dist` lists is the file at `location` or lies in that folder."""
    try:
        d = metadata.distribution(dist)
        files = d.files
    except Exception:    # noqa: BLE001 — an unreadable installation: it cannot be shown to hold the file
        return False
    if files is None:    # installed without a RECORD: where it is installed is all there is to go by
        return True
    for f in files:
        try:
            path = Path(str(d.locate_file(f))).resolve()
        except (OSError, RuntimeError):
            continue
        if path == location or location in path.parents:
            return True
    return False


def _holders(candidates: Iterable[str], location: Path | None) -> list[str]:
    """Which of the distributions that claim a top-level name hold the module found at `location`.
    Several may claim one name (`tests`, `docs`, `build`: wheels that ship such folders by mistake), and
    the name may be a folder of the working directory that shadows them all: the module must lie where
    the distribution is installed, and where several claim it, among the files its RECORD lists."""
    candidates = sorted(set(candidates))
    if location is None:
        return candidates    # not imported here (the caller named it): the name alone decides
    inside = [d for d in candidates if (base := _base(d)) is not None and base in location.parents]
    if len(inside) <= 1:
        return inside
    return [d for d in inside if _holds(d, location)]


def installed_modules(modules: Iterable[str]) -> dict[str, list[str]]:
    """Top-level module → the installed distributions that really hold it (as imported in this process:
    `_provides`). Modules no distribution holds (the submission's own files, a folder of the working
    directory, the standard library) are left out."""
    mapping = packages_distributions()
    stdlib = getattr(sys, "stdlib_module_names", frozenset())
    out: dict[str, list[str]] = {}
    for mod in sorted(set(modules)):
        if mod in stdlib or mod not in mapping:
            continue
        dists = _holders(mapping[mod], _module_location(mod))
        if dists:
            out[mod] = dists
    return out


def distributions_of(modules: Iterable[str]) -> dict[str, str | None]:
    """Installed distributions (name → version) that provide the given top-level modules (`installed_modules`).

    Modules no distribution provides (the submission's own files, the standard library) are left out.
    """
    return {dist: _version(dist) for dists in installed_modules(modules).values() for dist in dists}


def worker_environment(modules_before: Iterable[str], modules_after: Iterable[str]) -> dict:
    """What the worker measured with: threads in use, affinity, and what the submission imported."""
    import torch

    new = installed_modules(top_level_modules(modules_after) - top_level_modules(modules_before))
    return {"torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
            "cpu_affinity": _affinity(), "env": {k: os.environ.get(k) for k in THREAD_ENV},
            "submission_imported": {d: _version(d) for dists in new.values() for d in dists},
            "submission_modules": sorted(new)}


def merge_worker(environment: dict, worker_env: dict | None) -> dict:
    """The report's environment with one worker's folded in: packages the submission imported, threads used."""
    if not worker_env:
        return environment
    packages = dict(environment.get("packages_submission") or {})
    for dist, version in (worker_env.get("submission_imported") or {}).items():
        packages.setdefault(dist, version)
    used = list(environment.get("threads_used") or [])
    n = worker_env.get("torch_threads")
    if n is not None and n not in used:
        used.append(n)
    return {**environment, "packages_submission": packages, "threads_used": used}
