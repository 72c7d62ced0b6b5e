"""Runs a profile: one worker process per rate point, with limits; the report written after each.

The runner never measures: it starts `python -m profiler.worker` for each rate point under a wall-clock
timeout and a memory limit, collects its `RateResult` (or records why it failed: exception, crash,
timeout, memory, with the last lines of its stderr), and writes the report atomically after every rate
point, so a profile killed at any moment leaves a valid report of what finished, which `--resume`
continues from.

Memory limit, two layers: RLIMIT_DATA set in the worker before anything is imported (allocations beyond
it fail at once, inside the worker, as an exception the worker records), and a resident-set watchdog in
the parent that kills the worker's process group when its RSS goes over (catches memory RLIMIT_DATA does
not count: shared mappings, memory of child processes). RLIMIT_AS is not used: importing torch maps far
more address space than it uses, and the CUDA driver reserves the whole unified address range. For runs
that use a CUDA device RLIMIT_DATA is not set either (the driver's mappings are not documented as
staying out of it), so only the watchdog applies; the report says which layers were in force.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .conditions import TestConditions
from .environment import fingerprint, merge_worker
from .errors import InputError
from . import derive
from .version import SCHEMA_VERSION, __version__
from .model.io import read_report, write_report
from .model.report import Environment, ErrorRecord, RateResult, Report, RunInfo, WorkerInfo
from .submission import Submission, files_hash

Progress = Callable[[str, dict], None]

MIB = 1024 * 1024
STDERR_TAIL_LINES = 40
STDERR_LINE_CHARS = 2000         # a submission printing megabytes on one line must not fill the report
WATCHDOG_PERIOD_S = 0.05

# Runs in the fresh interpreter before the worker module is imported, so the limits hold for everything
# the worker and the submission do (imports included):
#   RLIMIT_DATA from JPEGAI_WORKER_DATA_LIMIT (bytes, 0 = none);
#   PR_SET_PDEATHSIG = SIGKILL, so a worker never outlives a runner killed with SIGKILL;
# then runs argv[1] (a module, or a .py file for tests) as __main__ with the remaining arguments.
_LAUNCHER = """
import os, sys, resource, runpy
lim = int(os.environ.pop("JPEGAI_WORKER_DATA_LIMIT", "0") or 0)
if lim:
    resource.setrlimit(resource.RLIMIT_DATA, (lim, lim))
parent = int(os.environ.pop("JPEGAI_WORKER_PARENT", "0") or 0)
try:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0)
except Exception:
    pass
if parent and os.getppid() != parent:
    sys.exit(70)
target = sys.argv.pop(1)
if target.endswith(".py"):
    sys.argv[0] = target
    runpy.run_path(target, run_name="__main__")
else:
    runpy.run_module(target, run_name="__main__", alter_sys=True)
"""


def _no_progress(kind: str, info: dict) -> None:
    pass


@dataclass(frozen=True)
class WorkerExit:
    """How a limited child process ended."""

    returncode: int | None
    wall_s: float
    timed_out: bool = False
    memory_exceeded_mib: float | None = None   # the RSS at which the watchdog killed it
    stderr_tail: str = ""
    limits: dict = field(default_factory=dict)  # what was enforced, for the report


def use_rlimit_data(devices: list[str]) -> bool:
    """RLIMIT_DATA only where no CUDA device will be used (see the module docstring)."""
    return "cuda" not in devices or not Path("/dev/nvidiactl").exists()


def _tree_rss(proc) -> float:
    """Resident memory of a process and all its descendants, bytes (0 once it is gone)."""
    import psutil

    total = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_limited(target: str, args: list[str], *, timeout_s: float, memory_limit_mib: int, rlimit_data: bool,
                env: dict | None = None, cwd: str | Path | None = None,
                on_stdout: Callable[[str], None] = lambda line: None) -> WorkerExit:
    """Run `python -m target args` (or a .py file) in its own process group under the limits.

    Kills the whole group on timeout or when its resident memory goes over the limit. Never raises for
    anything the child does; an interrupt of the parent kills the child before propagating.
    """
    import psutil

    env = dict(os.environ if env is None else env)
    env["JPEGAI_WORKER_DATA_LIMIT"] = str(memory_limit_mib * MIB if rlimit_data else 0)
    env["JPEGAI_WORKER_PARENT"] = str(os.getpid())
    # -X faulthandler: a segfault in native code still prints the Python stack to stderr.
    cmd = [sys.executable, "-X", "faulthandler", "-c", _LAUNCHER, target, *args]
    stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    limits = {"timeout_s": timeout_s, "memory_limit_mib": memory_limit_mib,
              "memory_enforced_by": (["RLIMIT_DATA"] if rlimit_data else []) + ["RSS watchdog"]}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                            env=env, cwd=cwd, start_new_session=True)

    def read_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            on_stdout(line)

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            line = line.rstrip("\n")
            stderr_tail.append(line if len(line) <= STDERR_LINE_CHARS else line[:STDERR_LINE_CHARS] + " […]")

    readers = [threading.Thread(target=read_stdout, daemon=True), threading.Thread(target=read_stderr, daemon=True)]
    for t in readers:
        t.start()
    timed_out = False
    exceeded = None
    limit_bytes = memory_limit_mib * MIB
    try:
        ps = psutil.Process(proc.pid)
        while proc.poll() is None:
            if time.perf_counter() - t0 > timeout_s:
                timed_out = True
                _kill_group(proc.pid)
                break
            rss = _tree_rss(ps)
            if rss > limit_bytes:
                exceeded = rss / MIB
                _kill_group(proc.pid)
                break
            time.sleep(WATCHDOG_PERIOD_S)
        proc.wait()
    except psutil.NoSuchProcess:
        proc.wait()
    finally:
        # Also on KeyboardInterrupt; and anything the submission forked and left behind.
        _kill_group(proc.pid)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for t in readers:
        t.join(timeout=5)
    return WorkerExit(returncode=proc.returncode, wall_s=time.perf_counter() - t0, timed_out=timed_out,
                      memory_exceeded_mib=exceeded, stderr_tail="\n".join(stderr_tail), limits=limits)


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


SIGNAL_MEANING = {"SIGSEGV": "segmentation fault", "SIGABRT": "abort", "SIGBUS": "bus error",
                  "SIGFPE": "arithmetic error", "SIGILL": "illegal instruction",
                  "SIGKILL": "killed from outside, e.g. by the kernel's out-of-memory killer"}


def failure_reason(ex: WorkerExit, last_event: str | None) -> tuple[str, str]:
    """(kind, one-line reason) for a worker that did not deliver a result."""
    during = f" during {last_event}" if last_event else " before the submission was loaded"
    lim = ex.limits
    if ex.timed_out:
        return "timeout", f"timed out after {lim['timeout_s']:g} s{during} (worker.timeout_s / --timeout); killed"
    if ex.memory_exceeded_mib is not None:
        return "memory", (f"exceeded the memory limit{during}: resident {ex.memory_exceeded_mib:.0f} MiB > "
                          f"{lim['memory_limit_mib']} MiB (worker.memory_limit_mib / --memory-limit); killed")
    rc = ex.returncode
    if rc is not None and rc < 0:
        name = _signal_name(-rc)
        meaning = SIGNAL_MEANING.get(name)
        return "crash", f"worker crashed{during}: {name}" + (f" ({meaning})" if meaning else "")
    if rc == 0:
        return "crash", f"worker exited{during} without writing a result (os._exit in the submission?)"
    hint = ""
    if last_event is None and lim.get("memory_enforced_by", [None])[0] == "RLIMIT_DATA":
        hint = f" (importing torch needs about 1 GiB: is the memory limit of {lim['memory_limit_mib']} MiB too low?)"
    return "crash", f"worker exited with status {rc}{during}{hint}"


@contextlib.contextmanager
def _sigterm_unwinds():
    """While a worker runs, SIGTERM to the runner raises SystemExit(143) instead of ending the process on
    the spot, so the worker's group is killed and its temporary folder removed (finally blocks run).
    Only where SIGTERM still has its default action, and only in the main thread."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def unwind(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, unwind)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_rate(sub: Submission, rate_index: int, cond: TestConditions, devices: list[str],
             progress: Progress = _no_progress, seed: int = 0, job_extra: dict | None = None) -> RateResult:
    """One rate point in a fresh worker process under the limits of `cond.worker`.

    `job_extra` is added to the worker's job: `delivery` (verify: the rate's bitstream and decoded-picture
    folders) or `write_bitstreams` (a folder to write the delivery layout into)."""
    rate = next(r for r in sub.rates if r.index == rate_index)
    last_event: list[str] = []

    def on_stdout(line: str) -> None:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            return  # the submission printed something: not ours
        if isinstance(event, dict) and "event" in event:
            kind = event.pop("event")
            last_event.append(f"image {event['name']}" if kind == "image" and "name" in event else str(kind))
            progress(kind, {"rate": rate.target_bpp, **event})

    with _sigterm_unwinds(), tempfile.TemporaryDirectory(prefix="jpegai-worker-") as tmp:
        job_path = Path(tmp) / "job.json"
        out_path = Path(tmp) / "result.json"
        job_path.write_text(json.dumps({"submission": str(sub.directory), "rate_index": rate_index,
                                        "conditions": cond.to_dict(), "devices": devices, "seed": seed,
                                        **(job_extra or {})}))
        env = dict(os.environ)
        # The worker sets torch's intra-op threads itself; keep OpenMP/MKL from starting more.
        env.setdefault("OMP_NUM_THREADS", str(cond.timing.threads))
        env.setdefault("MKL_NUM_THREADS", str(cond.timing.threads))
        env["PYTHONPATH"] = os.pathsep.join(p for p in [str(Path(__file__).resolve().parent.parent),
                                                        env.get("PYTHONPATH", "")] if p)
        ex = run_limited("profiler.worker", [str(job_path), str(out_path)], timeout_s=cond.worker.timeout_s,
                         memory_limit_mib=cond.worker.memory_limit_mib, rlimit_data=use_rlimit_data(devices),
                         env=env, cwd=tmp, on_stdout=on_stdout)
        worker_info = {"seed": seed, "limits": ex.limits, "returncode": ex.returncode}
        if out_path.is_file() and not ex.timed_out and ex.memory_exceeded_mib is None and ex.returncode == 0:
            result = RateResult.model_validate_json(out_path.read_text())
            worker = result.worker.model_copy(update={k: v for k, v in worker_info.items() if v is not None})
            error = None if result.error is None else result.error.model_copy(update={"stderr_tail": ex.stderr_tail})
            return result.model_copy(update={"worker": WorkerInfo.model_validate(worker.model_dump()), "error": error})
    kind, reason = failure_reason(ex, last_event[-1] if last_event else None)
    return RateResult(index=rate.index, target_bpp=rate.target_bpp, status="failed",
                      error=ErrorRecord(kind=kind, stage=last_event[-1] if last_event else "worker start",
                                        message=reason, stderr_tail=ex.stderr_tail),
                      worker=WorkerInfo.model_validate({**worker_info, "wall_s": ex.wall_s}))


def new_report(sub: Submission, cond: TestConditions, options: dict) -> Report:
    submission = {**sub.to_dict(), "files_sha256": files_hash(sub.directory)}
    return Report(submission=submission, conditions=cond.to_dict(), options=options,
                  environment=fingerprint(submission["files_sha256"], cond.timing.threads),
                  schema_version=SCHEMA_VERSION, tool={"version": __version__},
                  created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))


# Environment keys that must match for a resumed profile: its timings would otherwise mix machines.
RESUME_ENVIRONMENT_KEYS = ("cpu_model", "cpu_count", "python", "torch", "cuda_available", "gpu_name")


def _first_difference(old, new, prefix: str = "") -> str | None:
    """The dotted path of the first difference between two JSON-like values, with both values."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            diff = _first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
            if diff:
                return diff
        return None
    if old != new:
        where = f"{prefix.rstrip('.')}: " if prefix else ""
        return f"{where}{old!r} → {new!r}"
    return None


def resumable(path: Path, fresh: Report, rate_indices: list[int]) -> tuple[dict[int, RateResult], str]:
    """The finished rate points of the report at `path` that a resumed profile may keep, and a one-line
    notice saying what happens. Kept only when the submission's files, the test conditions, the devices
    and the machine are what they were; failed rate points are run again."""
    if not path.is_file():
        return {}, f"nothing to resume at {path}: starting a new profile"
    try:
        old = read_report(path)
    except InputError as exc:
        return {}, f"not resuming: {exc}; starting over"
    if old.submission.files_sha256 != fresh.submission.files_sha256:
        return {}, f"not resuming: the submission's files changed since {path} was written; starting over"
    old_cond = old.conditions.model_dump(mode="json", exclude={"source"})
    new_cond = fresh.conditions.model_dump(mode="json", exclude={"source"})
    diff = _first_difference(old_cond, new_cond)
    if diff:
        return {}, f"not resuming: the test conditions changed ({diff}); starting over"
    diff = _first_difference(old.options.devices, fresh.options.devices)
    if diff:
        return {}, f"not resuming: the devices changed ({diff}); starting over"
    diff = _first_difference({k: getattr(old.environment, k) for k in RESUME_ENVIRONMENT_KEYS},
                             {k: getattr(fresh.environment, k) for k in RESUME_ENVIRONMENT_KEYS})
    if diff:
        return {}, f"not resuming: the machine or software changed ({diff}); starting over"
    targets = {r.index: r.target_bpp for r in old.rates}
    wanted = {r.index: r.target_bpp for r in fresh.submission.rates if r.index in rate_indices}
    done = {r.index: r for r in old.rates if r.ok and r.index in wanted and wanted[r.index] == targets[r.index]}
    failed = [r.target_bpp for r in old.rates if not r.ok and r.index in wanted]
    todo = len(rate_indices) - len(done)
    notice = (f"resuming {path}: {len(done)} rate point(s) done"
              + (f" ({', '.join(f'{done[i].target_bpp:g}' for i in sorted(done))} bpp)" if done else "")
              + f", {todo} to run" + (f" (failed before, run again: {', '.join(f'{t:g}' for t in failed)} bpp)"
                                      if failed else ""))
    return done, notice


def _with_rates(report: Report, rates: list[RateResult], **run) -> Report:
    """The report with these rate points (sorted by rate), the environment folded, the summary fresh."""
    env = report.environment.model_dump(mode="json")
    for r in rates:
        env = merge_worker(env, r.environment.model_dump(mode="json"))
    updated = report.model_copy(update={"rates": sorted(rates, key=lambda r: r.target_bpp),
                                        "environment": Environment.model_validate(env),
                                        "run": report.run.model_copy(update=run)})
    return derive.with_summary(updated)


def profile(sub: Submission, cond: TestConditions, out_dir: Path, rate_indices: list[int], devices: list[str],
            progress: Progress = _no_progress, options: dict | None = None, resume: bool = False,
            seed: int = 0, job_extra: dict[int, dict] | None = None, verification: dict | None = None) -> Report:
    """Profile the given rate points; the report is rewritten at `out_dir/report.json` before the first
    and after each, atomically, so it is valid whenever the profile is killed.

    With `resume`, finished rate points of an existing report there are kept and not run again (see
    `resumable`); a `resume` progress event carries the one-line notice.
    """
    report = new_report(sub, cond, {**(options or {}), "devices": devices})
    if verification is not None:     # verify: the delivery's own section, in the report from the start
        from .model.report import Verification

        report = report.model_copy(update={"verification": Verification.model_validate(verification)})
    path = out_dir / "report.json"
    done: dict[int, RateResult] = {}
    if resume:
        done, notice = resumable(path, report, rate_indices)
        progress("resume", {"message": notice, "kept": sorted(done)})
    planned = [r.target_bpp for r in sub.rates if r.index in rate_indices]
    report = report.model_copy(update={"run": RunInfo(
        state="running", seed=seed, planned_rates=planned, resumed_rates=sorted(r.target_bpp for r in done.values()),
        limits={"timeout_s": cond.worker.timeout_s, "memory_limit_mib": cond.worker.memory_limit_mib})})
    rates = list(done.values())
    report = _with_rates(report, rates)
    write_report(report, path)
    for idx in rate_indices:
        rate = next(r for r in sub.rates if r.index == idx)
        if idx in done:
            progress("rate_done", {"rate": rate.target_bpp, "status": "ok", "resumed": True})
            continue
        progress("rate", {"rate": rate.target_bpp})
        result = run_rate(sub, idx, cond, devices, progress, seed=seed, job_extra=(job_extra or {}).get(idx))
        rates.append(result)
        report = _with_rates(report, rates)
        write_report(report, path)
        progress("rate_done", {"rate": rate.target_bpp, "status": result.status})
    report = _with_rates(report, rates, state="complete")
    write_report(report, path)
    return report
