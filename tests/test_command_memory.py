"""A program's peak memory from the kernel (profiler/adapters/process_memory.py, used by
profiler/adapters/command.py): a command that allocates and touches a known amount is measured within a
stated tolerance, for one process and for a tree; the GPU memory of its processes from NVML's accounting
(a fake NVML here: no device on CI), not measured, with the reason, where there is none."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from profiler.adapters import process_memory as pm
from profiler.adapters.command import run_process

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024

# Allocates N MiB and writes one byte per 4 KiB page, so every page is resident (a fresh bytearray is
# zero pages the kernel has not given yet).
ALLOC = ("import sys\nb = bytearray({n} * 1024 * 1024)\nfor i in range(0, len(b), 4096):\n    b[i] = 1\n")
# The interpreter itself, with nothing imported beyond its start: measured on this machine at 9-12 MiB;
# the tolerance allows 40 MiB above the allocation and nothing below it.
TOLERANCE_MIB = 40


def _run(code: str, tmp_path) -> dict:
    return run_process([sys.executable, "-S", "-c", code], tmp_path, {"PATH": "/usr/bin:/bin"}, 120)


def test_one_process_allocating_200_mib(tmp_path):
    r = _run(ALLOC.format(n=200), tmp_path)
    assert r["returncode"] == 0, r["stderr_tail"]
    assert 200 <= r["maxrss_mib"] <= 200 + TOLERANCE_MIB, r
    small = _run(ALLOC.format(n=1), tmp_path)
    assert small["maxrss_mib"] < 1 + TOLERANCE_MIB          # the figure follows the allocation
    assert r["peak_source"] in ("wait4 ru_maxrss", "cgroup v2 memory.peak")


def test_a_tree_that_waits_for_its_child(tmp_path):
    """The 200 MiB are the child's; the parent waits for it, so wait4's ru_maxrss of the parent covers
    it (the kernel folds waited-for descendants in), and a cgroup holds both anyway."""
    code = ("import subprocess, sys\n"
            f"subprocess.run([sys.executable, '-S', '-c', {ALLOC.format(n=200)!r}], check=True)\n")
    r = _run(code, tmp_path)
    assert r["returncode"] == 0, r["stderr_tail"]
    assert 200 <= r["maxrss_mib"] <= 200 + TOLERANCE_MIB, r


@pytest.mark.skipif(pm.open_cgroup() is None, reason="no delegated cgroup v2 memory controller: "
                    + pm.cgroup_unavailable_reason())
def test_cgroup_counts_two_children_at_once(tmp_path):
    """Two children of 150 MiB alive at the same time: the cgroup's peak is their sum (wait4 would give
    the larger one)."""
    child = ALLOC.format(n=150) + "import time\ntime.sleep(1.5)\n"
    code = ("import subprocess, sys\n"
            f"ps = [subprocess.Popen([sys.executable, '-S', '-c', {child!r}]) for _ in range(2)]\n"
            "assert all(p.wait() == 0 for p in ps)\n")
    r = _run(code, tmp_path)
    assert r["peak_source"] == "cgroup v2 memory.peak"
    assert 300 <= r["maxrss_mib"] <= 300 + 2 * TOLERANCE_MIB, r


def test_no_gpu_is_not_measured_never_zero(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)              # no NVML at all
    r = _run("pass", tmp_path)
    assert r["gpu_peak_mib"] is None and r["gpu_note"].startswith("no CUDA device")


class FakeNvml:
    """NVML's accounting calls: `pids` is what the device's accounting list holds (the command's process
    appears while it runs, as the driver would add it), `stats` each one's maxMemoryUsage in bytes."""

    def __init__(self, mode=1, before=(11,), during=(11, 42), stats=None):
        self.mode, self.before, self.during = mode, before, during
        self.stats = stats or {11: 999 * MIB, 42: 300 * MIB}
        self.calls = 0

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return "dev0"

    def nvmlDeviceGetAccountingMode(self, h):
        return self.mode

    def nvmlDeviceGetAccountingPids(self, h):
        self.calls += 1
        return list(self.before if self.calls == 1 else self.during)

    def nvmlDeviceGetAccountingStats(self, h, pid):
        return SimpleNamespace(maxMemoryUsage=self.stats[pid])


def test_gpu_peak_of_the_commands_processes_from_nvml_accounting():
    state = pm.gpu_begin(FakeNvml())
    peak, note = pm.gpu_end(state)
    assert peak == 300 and note == ""                            # pid 11 was there before: not the command's
    state = pm.gpu_begin(FakeNvml(during=(11, 42, 43), stats={11: 1, 42: 300 * MIB, 43: 50 * MIB}))
    assert pm.gpu_end(state) == (350, "")
    peak, note = pm.gpu_end(pm.gpu_begin(FakeNvml(mode=0)))
    assert peak is None and "accounting mode is off" in note
