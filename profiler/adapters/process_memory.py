"""Peak memory of a program's process tree, from the kernel and the driver, never by polling
(profiler/adapters/command.py).

Host memory, in order of preference:
- **cgroup v2 `memory.peak`** (Linux ≥ 5.19): each command runs in a fresh child cgroup of this process's
  own (a `/bin/sh` wrapper moves itself into it, then `exec`s the command, so nothing runs before it is
  inside); `memory.peak` is the high-water mark of everything the tree charged at once: every process
  and its page cache, children started in new sessions included. Used where the cgroup v2 hierarchy is
  mounted, this process's cgroup delegates the memory controller to its children
  (`cgroup.subtree_control`) and a child cgroup can be made and entered (checked once per process).
- otherwise **`os.wait4` rusage**: `ru_maxrss` of the waited command, which the kernel takes as the larger
  of the command's own high-water mark and those of the descendants it waited for (RUSAGE_CHILDREN
  semantics): exact for one process, or a tree that runs one process at a time; a tree whose processes
  overlap is under-counted (the largest of them, not their sum), and a descendant nobody waited for is
  not in it. Linux keeps a process's high-water mark across `execve`, and a forked (or vforked) child
  starts with its parent's: a command started straight from the worker (torch loaded: hundreds of MiB)
  would report the worker's RSS. So the command is forked by a small launcher (`python -S`, about
  10 MiB, measured) that waits for it with `wait4` and writes its rusage and wall time to a file; figures
  below the launcher's own size read as that size.
The report says which source a figure comes from (`peak_source`).

GPU memory: NVML's accounting statistics (`nvmlDeviceGetAccountingStats(...).maxMemoryUsage`), kept by
the driver per process, read after the command ended, for every process that appeared in the device's
accounting list while it ran (a set difference, so the host's pid namespace does not matter; a process of
someone else started in that window would be counted too). Summed over those processes (exact for one).
Only where a device exists and accounting mode is on (`nvidia-smi -am 1`, as root); otherwise not
measured, with the reason.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path

MIB = 1024 * 1024
_counter = itertools.count()
_PROBED: dict[str, object] = {}


def _cgroup2_mounts() -> list[Path]:
    out = []
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            if right.split(" ")[0] == "cgroup2":
                out.append(Path(left.split(" ")[4]))
    except (OSError, IndexError):
        pass
    return out


def _own_cgroup() -> str | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    except OSError:
        pass
    return None


def cgroup_parent() -> tuple[Path | None, str]:
    """(the cgroup v2 directory under which each command gets its own cgroup, or None; why not)."""
    rel = _own_cgroup()
    mounts = _cgroup2_mounts()
    if rel is None or not mounts:
        return None, "no cgroup v2 hierarchy"
    for mnt in mounts:
        d = mnt / rel.lstrip("/")
        try:
            controllers = (d / "cgroup.subtree_control").read_text().split()
        except OSError:
            continue
        if "memory" not in controllers:
            return None, f"{d}: the memory controller is not delegated to child cgroups"
        if not os.access(d, os.W_OK):
            return None, f"{d}: not writable"
        return d, ""
    return None, "this process's cgroup v2 directory was not found"


class TreeCgroup:
    """A fresh child cgroup for one command: `wrap(argv)` enters it before the command runs;
    `peak_mib()` once it ended; `close()` removes it."""

    def __init__(self, parent: Path):
        self.path = parent / f"jpegai-cmd-{os.getpid()}-{next(_counter)}"
        self.path.mkdir()
        if not (self.path / "memory.peak").is_file():
            self.close()
            raise OSError(f"{self.path}: no memory.peak (Linux ≥ 5.19 needed)")

    def wrap(self, argv: list[str]) -> list[str]:
        # $0 is the cgroup.procs file; the shell writes its own pid there, then becomes the command.
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"), *argv]

    def peak_mib(self) -> float | None:
        try:
            return int((self.path / "memory.peak").read_text().split()[0]) / MIB
        except (OSError, ValueError, IndexError):
            return None

    def close(self) -> None:
        try:
            self.path.rmdir()
        except OSError:
            pass


def open_cgroup() -> TreeCgroup | None:
    """A cgroup for the next command, or None where the cgroup way is not available (decided once per
    process: a probe command must land in a fresh cgroup and be seen in its memory.peak)."""
    if "usable" not in _PROBED:
        parent, why = cgroup_parent()
        usable = False
        if parent is not None:
            try:
                probe = TreeCgroup(parent)
                try:
                    r = subprocess.run(probe.wrap(["true"]), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, timeout=10)
                    usable = r.returncode == 0 and probe.peak_mib() is not None
                    why = "" if usable else f"{probe.path}: a command could not be moved into it"
                finally:
                    probe.close()
            except (OSError, subprocess.SubprocessError) as exc:
                why = str(exc)
        _PROBED.update(usable=usable, parent=parent, why=why)
    if not _PROBED["usable"]:
        return None
    try:
        return TreeCgroup(_PROBED["parent"])
    except OSError:
        return None


def cgroup_unavailable_reason() -> str:
    open_cgroup()
    return str(_PROBED.get("why", ""))


# -- wait4 through a small launcher ------------------------------------------------------------------------

# argv: OUT_FILE COMMAND...; forks COMMAND from this small interpreter, waits, writes {"wall_s", "maxrss_kib"}
# to OUT_FILE and ends as the command did (the same exit status, or killed by the same signal).
_LAUNCHER = r"""
import os, signal, sys, time
out, argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        os.write(2, f"{argv[0]}: {exc}\n".encode())
    os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
with open(out + ".tmp", "w") as fh:
    fh.write('{"wall_s": %r, "maxrss_kib": %d}' % (wall, ru.ru_maxrss))
os.replace(out + ".tmp", out)
if os.WIFSIGNALED(status):
    signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
    os.kill(os.getpid(), os.WTERMSIG(status))
os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
"""


def wait4_wrap(argv: list[str], out: Path) -> list[str]:
    """The command started by the launcher, which writes its wait4 figures to `out` (`read_wait4`)."""
    import sys

    return [sys.executable, "-S", "-c", _LAUNCHER, str(out), *argv]


def read_wait4(out: Path) -> dict | None:
    """{"wall_s", "maxrss_mib"} of the command, as its launcher measured them; None when it did not
    finish writing them (killed at the timeout)."""
    import json

    try:
        data = json.loads(out.read_text())
        return {"wall_s": float(data["wall_s"]), "maxrss_mib": int(data["maxrss_kib"]) / 1024.0}
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- GPU: NVML accounting -----------------------------------------------------------------------------

NVML_FEATURE_ENABLED = 1


def gpu_begin(nvml=None) -> dict:
    """Before a command: the devices with accounting on and the processes already in their lists, or
    {"reason": why the GPU memory of the command will not be measured}."""
    try:
        if nvml is None:
            import pynvml as nvml
        nvml.nvmlInit()
    except Exception:
        return {"reason": "no CUDA device (NVML not available)"}
    try:
        count = nvml.nvmlDeviceGetCount()
        if count == 0:
            nvml.nvmlShutdown()
            return {"reason": "no CUDA device"}
        devices = []
        for i in range(count):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            try:
                if nvml.nvmlDeviceGetAccountingMode(h) != NVML_FEATURE_ENABLED:
                    continue
                devices.append((h, set(nvml.nvmlDeviceGetAccountingPids(h))))
            except Exception:
                continue
    except Exception as exc:
        _shutdown(nvml)
        return {"reason": f"NVML failed: {type(exc).__name__}: {exc}"}
    if not devices:
        _shutdown(nvml)
        return {"reason": "NVML accounting mode is off (nvidia-smi -am 1 turns it on, as root): without it the "
                          "GPU memory of a program's processes is not measured (the suite does not poll)"}
    return {"nvml": nvml, "devices": devices}


def gpu_end(state: dict) -> tuple[float | None, str]:
    """After the command: (the GPU memory peak of the processes that appeared while it ran, MiB, or None;
    the reason when None)."""
    if "reason" in state:
        return None, state["reason"]
    nvml = state["nvml"]
    total, seen = 0, 0
    try:
        for h, before in state["devices"]:
            for pid in set(nvml.nvmlDeviceGetAccountingPids(h)) - before:
                try:
                    total += int(nvml.nvmlDeviceGetAccountingStats(h, pid).maxMemoryUsage)
                    seen += 1
                except Exception:
                    continue
    finally:
        _shutdown(nvml)
    if not seen:
        return 0.0, "no process of the command used the GPU"
    return total / MIB, ""


def _shutdown(nvml) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:
        pass
