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
more address space than it uses, and the CUDA driver reserves the whole unified address range. RLIMIT_DATA
is set as a soft limit; a worker with a GPU phase raises it to the hard limit just before it creates its
CUDA context (the driver's mappings are not documented as staying out of it), so the CPU phase is limited
on GPU machines too and the GPU phase by the watchdog alone (`worker.rlimit_data_lifted`). The watchdog
counts anonymous and shared-memory resident pages, not file-backed ones (the CUDA libraries' code is
gigabytes of those); the report says which layers were in force.
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
from .counting.reuse import earlier_entries
from .environment import fingerprint, host_fingerprint, merge_worker
from .metrics import info as metric_info
from .errors import InputError
from . import derive
from .version import SCHEMA_VERSION, __version__
from .model.io import read_report, write_report
from .model.report import (Environment, ErrorRecord, HostInfo, MetricInfo, RateResult, Report, RunInfo,
                           WorkerInfo)
from .slots import LocalSlotPool, SlotPool, SlotUse, WholeLifeSlot, allowed_cpus, pin_process
from .submission import Submission, files_fingerprint
from .zygote import Zygote, ZygoteChild
from .zygote import worker_env as zygote_worker_env

Progress = Callable[[str, dict], None]

MIB = 1024 * 1024
STDERR_TAIL_LINES = 40
STDERR_LINE_CHARS = 2000         # a submission printing megabytes on one line must not fill the report
WATCHDOG_PERIOD_S = 0.05

# The worker's progress events travel on their own pipe, not on its stdout (which the submission shares):
# its write end is passed to the worker as this fd number, in this environment variable.
PROGRESS_FD_ENV = "JPEGAI_PROGRESS_FD"
SLOT_FD_ENV = "JPEGAI_SLOT_FD"     # the read end of the runner's replies to slot requests (profiler/slots.py)
PROGRESS_LINE_BYTES = 64 * 1024   # longer "progress" lines are not the worker's: dropped
OUTPUT_DRAIN_S = 0.5              # once the worker is gone, what is already in the pipes is read, no longer

# Runs in the fresh interpreter before the worker module is imported, so the limits hold for everything
# the worker and the submission do (imports included):
#   the CPUs of JPEGAI_WORKER_CPUS (the untimed cores, profiler/slots.py; a timed phase pins itself to
#   its slot's cores and back);
#   RLIMIT_DATA from JPEGAI_WORKER_DATA_LIMIT (bytes, 0 = none), the soft limit only: the worker lifts
#   it to the hard limit before its GPU phase (worker._lift_data_limit);
#   then it forks: the process the runner started stays as a small *watcher*, its child is the worker.
#   The watcher is a child subreaper (PR_SET_CHILD_SUBREAPER): anything below it that is orphaned (a
#   double fork, a daemon in a new session, the worker's children once the worker is gone) becomes its
#   child. It waits for the worker, then kills its children generation by generation (a direct child's pid
#   cannot be reused before the watcher reaps it, so no stranger is killed) until none is left, and exits
#   with the worker's status (its signal re-raised). PR_SET_PDEATHSIG = SIGTERM: when the runner dies,
#   even by SIGKILL, the watcher kills the worker and does the same. The worker has PR_SET_PDEATHSIG =
#   SIGKILL (it never outlives the watcher) and is a subreaper too (orphans stay in the tree the runner
#   watches); the progress pipe (JPEGAI_PROGRESS_FD) is made non-inheritable in it (nothing the worker or
#   the submission executes gets it; the target takes the number out of the environment itself) and
#   closed in the watcher;
# then the worker runs argv[1] (a module, or a .py file for tests) as __main__ with the remaining
# arguments, and on its way out kills whatever it started that is still running and ends with the
# target's exit status without the interpreter's teardown.
_LAUNCHER = """
import os, sys, resource, runpy, signal, time
cpus = os.environ.pop("JPEGAI_WORKER_CPUS", "")
if cpus:
    try:
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    except (OSError, ValueError, AttributeError):
        pass
lim = int(os.environ.pop("JPEGAI_WORKER_DATA_LIMIT", "0") or 0)
if lim:
    resource.setrlimit(resource.RLIMIT_DATA, (lim, resource.getrlimit(resource.RLIMIT_DATA)[1]))
parent = int(os.environ.pop("JPEGAI_WORKER_PARENT", "0") or 0)
def prctl(option, value):
    try:
        import ctypes
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except Exception:
        return False
prctl(36, 1)                     # PR_SET_CHILD_SUBREAPER
prctl(1, signal.SIGTERM)         # PR_SET_PDEATHSIG: the runner's death reaches the watcher
if parent and os.getppid() != parent:
    sys.exit(70)
watcher = os.getpid()
try:
    worker = os.fork()
except OSError:
    worker = -1                  # no watcher: the launcher is the worker itself
if worker > 0:
    try:
        os.close(int(os.environ.get("JPEGAI_PROGRESS_FD", "")))
    except (ValueError, OSError):
        pass
    def children():
        kids = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/stat") as fh:
                        if int(fh.read().rpartition(")")[2].split()[1]) == watcher:
                            kids.append(int(name))
                except (OSError, ValueError, IndexError):
                    pass
        return kids
    def end_all():
        give_up = time.monotonic() + 10.0      # a process that cannot die (stuck in the kernel) is left
        while time.monotonic() < give_up:
            kids = children()
            if not kids:
                return
            for k in kids:
                try:
                    os.kill(k, signal.SIGKILL)
                except OSError:
                    pass
            deadline = time.monotonic() + 2.0
            for k in kids:
                while True:
                    try:
                        if os.waitpid(k, os.WNOHANG)[0] or time.monotonic() > deadline:
                            break
                    except ChildProcessError:
                        break
                    time.sleep(0.002)
    def on_term(signum, frame):
        try:
            os.kill(worker, signal.SIGKILL)
        except OSError:
            pass
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    status = None
    while status is None:
        try:
            got, st = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if got == worker:
            status = st
    end_all()
    if status is not None and os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            import faulthandler
            faulthandler.disable()
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        except Exception:
            pass
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status) if status is not None and os.WIFEXITED(status) else 70)
if worker == 0:
    prctl(1, signal.SIGKILL)     # the worker never outlives the watcher
    if os.getppid() != watcher:
        os._exit(70)
    prctl(36, 1)
try:
    os.set_inheritable(int(os.environ.get("JPEGAI_PROGRESS_FD", "")), False)
except (ValueError, OSError):
    pass
target = sys.argv.pop(1)
code = None
try:
    if target.endswith(".py"):
        sys.argv[0] = target
        runpy.run_path(target, run_name="__main__")
    else:
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    code = 0
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if not isinstance(exc.code, (int, type(None))):
        print(exc.code, file=sys.stderr)
finally:
    try:
        import psutil
        me = psutil.Process()
        for _ in range(3):
            left = me.children(recursive=True)
            for p in left:
                try:
                    p.kill()
                except psutil.Error:
                    pass
            if not left:
                break
    except Exception:
        pass
# The target ended (returned or exited): its result is on disk. The interpreter's own teardown (torch's
# and the model's objects, ~1 s per rate point) is skipped; an uncaught exception still unwinds as usual.
if code is not None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code & 0xFF)
"""

# How every process a worker started is ended, as the report says (`worker.limits.processes_ended_by`).
PROCESSES_ENDED_BY = ["process group", "descendants tracked by the runner",
                      "subreaper watcher (also when the runner is killed)"]


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
    started_from: str = "fresh interpreter"      # or "zygote"


def use_rlimit_data(devices: list[str]) -> bool:
    """RLIMIT_DATA for every worker: it is a soft limit, and a worker with a GPU phase lifts it before
    creating its CUDA context, so it holds for the CPU phase on GPU machines too (module docstring)."""
    return True


def _private_resident(pid: int) -> int | None:
    """Resident memory of one process that the kernel cannot drop: anonymous + shared-memory pages
    (RssAnon + RssShmem of /proc/PID/status, Linux ≥ 4.5), bytes. File-backed pages (the CUDA, cuDNN and
    cuBLAS libraries' code, mmapped weight files) are left out: they are shared and reclaimable, and on a
    GPU machine run to gigabytes. None where the kernel does not give the split."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    kib = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("RssAnon", "RssShmem"):
            kib[key] = int(rest.split()[0])
    return 1024 * (kib["RssAnon"] + kib.get("RssShmem", 0)) if "RssAnon" in kib else None


def _descendants(proc) -> list:
    """Every live descendant of a psutil.Process ([] once it is gone)."""
    import psutil

    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def _tree_rss(proc, descendants: list | None = None, include_root: bool = True) -> float:
    """Resident memory the watchdog counts for a process and all its descendants (without the process
    itself when not `include_root`: the launcher's watcher), bytes (0 once it is gone):
    `_private_resident` per process where the kernel gives it, else its whole RSS."""
    import psutil

    total = 0
    for p in [proc] * include_root + (_descendants(proc) if descendants is None else descendants):
        private = _private_resident(p.pid)
        if private is not None:
            total += private
            continue
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


def _kill_tree(pgid: int, root, seen: set) -> None:
    """SIGKILL the worker's process group and every process ever seen below the worker, including those
    that left the group (`start_new_session=True`) or were re-parented away once the worker died, and their
    own descendants. psutil checks each pid is still the process that was seen (no pid-reuse victims)."""
    import psutil

    for _ in range(3):
        found = set(seen)
        if root is not None:
            found.update(_descendants(root))
        for p in list(found):
            found.update(_descendants(p))
        seen |= found
        _kill_group(pgid)
        killed = 0
        for p in found:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    p.kill()
                    killed += 1
            except psutil.Error:
                pass
        if not killed:
            return
        time.sleep(0.01)


class _Lines:
    """A byte stream cut into text lines; a line longer than `max_bytes` is cut there (`cut` is called with
    its start) and the rest of it up to the next newline is dropped."""

    def __init__(self, on_line: Callable[[str, bool], None], max_bytes: int):
        self.on_line = on_line
        self.max_bytes = max_bytes
        self.buf = bytearray()
        self.skipping = False

    def feed(self, data: bytes) -> None:
        self.buf += data
        while (i := self.buf.find(b"\n")) >= 0:
            line = bytes(self.buf[:i])
            del self.buf[:i + 1]
            if self.skipping:
                self.skipping = False
            else:
                self.on_line(line.decode("utf-8", "replace"), False)
        if len(self.buf) > self.max_bytes:
            if not self.skipping:
                self.on_line(bytes(self.buf[:self.max_bytes]).decode("utf-8", "replace"), True)
            self.skipping = True
            self.buf.clear()

    def close(self) -> None:
        if self.buf and not self.skipping:
            self.on_line(bytes(self.buf).decode("utf-8", "replace"), False)
        self.buf.clear()


def run_limited(target: str, args: list[str], *, timeout_s: float, memory_limit_mib: int, rlimit_data: bool,
                env: dict | None = None, cwd: str | Path | None = None,
                on_progress: Callable[[str], None] = lambda line: None, slot_fd: int | None = None,
                paused_s: Callable[[], float] = lambda: 0.0, cpus: tuple[int, ...] | None = None,
                cancel: threading.Event | None = None, on_start: Callable[[int], None] = lambda pid: None,
                zygote: Zygote | None = None) -> WorkerExit:
    """Run `python -m target args` (or a .py file) in its own process group under the limits.

    The child's stdout and stderr are one captured stream (its last lines are `stderr_tail`); progress
    lines come only from the pipe whose fd number is in the child's `JPEGAI_PROGRESS_FD` (`on_progress`,
    one call per line). Kills the whole group on timeout or when its resident memory goes over the
    limit, and when the child ends, every process it started (tracked while it ran, the group, the new
    sessions, the orphans). `slot_fd`, a pipe's read end, is passed to the child as `JPEGAI_SLOT_FD`
    (the runner's replies to its slot requests); the seconds `paused_s()` says it waited for a timing
    slot do not count against the timeout; `cpus` are the CPUs it starts on. When `cancel` is set (the
    profile is interrupted in another thread) the child is killed as on an interrupt, and
    KeyboardInterrupt raised. `on_start(pid)` is called once the child runs (its pid is its process
    group). `wall_s` is the child's own lifetime: pipes still held by something it started are not
    waited on. Never raises for anything the child does; an interrupt of the parent
    kills the child and its processes before propagating. With `zygote` (profiler/zygote.py) the child is
    forked from it, with the same launcher, environment and pipes; where it cannot serve, a fresh
    interpreter is started as without.
    """
    import psutil
    import selectors

    env = dict(os.environ if env is None else env)
    env["JPEGAI_WORKER_DATA_LIMIT"] = str(memory_limit_mib * MIB if rlimit_data else 0)
    env["JPEGAI_WORKER_PARENT"] = str(os.getpid())
    if cpus:
        env["JPEGAI_WORKER_CPUS"] = ",".join(str(c) for c in cpus)
    if slot_fd is not None:
        env[SLOT_FD_ENV] = str(slot_fd)
    # -X faulthandler: a segfault in native code still prints the Python stack to stderr.
    cmd = [sys.executable, "-X", "faulthandler", "-c", _LAUNCHER, target, *args]
    stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    limits = {"timeout_s": timeout_s, "memory_limit_mib": memory_limit_mib,
              "memory_enforced_by": (["RLIMIT_DATA"] if rlimit_data else []) + ["RSS watchdog"],
              "processes_ended_by": list(PROCESSES_ENDED_BY)}

    def tail(line: str, cut: bool) -> None:
        if cut or len(line) > STDERR_LINE_CHARS:
            line = line[:STDERR_LINE_CHARS] + " […]"
        stderr_tail.append(line)

    def progress(line: str, cut: bool) -> None:
        if not cut:
            on_progress(line)

    progress_r, progress_w = os.pipe()
    env[PROGRESS_FD_ENV] = str(progress_w)
    t0 = time.perf_counter()
    try:
        proc = _from_zygote(zygote, [target, *args], env, cwd, progress_w, slot_fd) if zygote is not None else None
        if proc is None:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    env=env, cwd=cwd, start_new_session=True,
                                    pass_fds=(progress_w,) + ((slot_fd,) if slot_fd is not None else ()))
    except BaseException:
        os.close(progress_r)
        os.close(progress_w)
        raise
    os.close(progress_w)   # the child holds the only write end: EOF once it and its inheritors are gone
    on_start(proc.pid)
    assert proc.stdout is not None
    output_fd = proc.stdout.fileno()
    streams = {output_fd: _Lines(tail, 4 * STDERR_LINE_CHARS), progress_r: _Lines(progress, PROGRESS_LINE_BYTES)}
    sel = selectors.DefaultSelector()
    for fd in streams:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)

    def pump(timeout: float) -> None:
        """Read what the pipes hold, waiting up to `timeout` for the first data."""
        for key, _ in sel.select(timeout):
            try:
                data = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                streams[key.fd].feed(data)
            else:
                sel.unregister(key.fd)

    timed_out = False
    exceeded = None
    wall_s = None
    limit_bytes = memory_limit_mib * MIB
    seen: set = set()
    ps = None
    try:
        try:
            ps = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            pass
        next_check = 0.0
        while proc.poll() is None:
            if cancel is not None and cancel.is_set():
                raise KeyboardInterrupt
            now = time.perf_counter()
            if now - t0 - paused_s() > timeout_s:
                timed_out = True
                break
            if now >= next_check:   # once a period, however much the child writes (it is being timed)
                next_check = now + WATCHDOG_PERIOD_S
                below = _descendants(ps) if ps is not None else []
                seen.update(below)
                rss = _tree_rss(ps, below, include_root=False) if ps is not None else 0   # not the watcher's
                if rss > limit_bytes:
                    exceeded = rss / MIB
                    break
            pump(max(0.0, next_check - time.perf_counter()))
        if proc.poll() is None:
            _kill_tree(proc.pid, ps, seen)
        proc.wait()
        wall_s = time.perf_counter() - t0
    finally:
        # Also on KeyboardInterrupt: the group, and anything the submission started and left behind.
        _kill_tree(proc.pid, ps, seen)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        try:
            deadline = time.perf_counter() + OUTPUT_DRAIN_S
            while sel.get_map() and time.perf_counter() < deadline:
                pump(max(0.0, deadline - time.perf_counter()))
        finally:
            sel.close()
            for lines in streams.values():
                lines.close()
            os.close(progress_r)
            proc.stdout.close()
    return WorkerExit(returncode=proc.returncode, wall_s=wall_s, timed_out=timed_out,
                      memory_exceeded_mib=exceeded, stderr_tail="\n".join(stderr_tail), limits=limits,
                      started_from="zygote" if isinstance(proc, ZygoteChild) else "fresh interpreter")


def _from_zygote(zygote: Zygote, argv: list[str], env: dict, cwd, progress_w: int, slot_fd: int | None):
    """The launcher forked from the zygote with the pipes Popen would have passed, or None."""
    out_r, out_w = os.pipe()
    try:
        proc = zygote.spawn(_LAUNCHER, argv, env, cwd, out_w, {PROGRESS_FD_ENV: progress_w,
                                                               **({SLOT_FD_ENV: slot_fd} if slot_fd is not None else {})})
    except BaseException:
        os.close(out_r)
        raise
    finally:
        os.close(out_w)
    if proc is None:
        os.close(out_r)
        return None
    proc.stdout = os.fdopen(out_r, "rb", buffering=0)
    return proc


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


# The events a worker sends (profiler/worker.py `_emit`); the runner's own (rate, rate_done, resume) never
# come from a worker.
WORKER_EVENTS = ("start", "image", "resolutions", "tasks", "cuda", "step", "phase", "slot", "slot_release")
# Steps of one picture or delivery item (`step` events): what the worker was doing when it died.
ITEM_STEPS = {"encode": "the re-encode of the original", "decode": "the decode of this bitstream",
              "repeats": "the warm-up and timed runs of this bitstream",
              "cuda": "the GPU decode of this bitstream"}
# A rate point's phases, in order (the `phase` event's values).
PHASES = ("waiting for a timing slot", "building", "counting", "timing", "quality", "resolutions", "cross-check",
          "interop", "GPU")


def _phase_info(event: dict) -> dict:
    """The fields of a worker's `phase` event, each checked ({} when the phase is not one of PHASES)."""
    if event.get("phase") not in PHASES:
        return {}
    info: dict = {"phase": event["phase"]}
    for key in ("image", "detail"):
        if isinstance(event.get(key), str):
            info[key] = event[key][:200]
    for key in ("n", "of"):
        if isinstance(event.get(key), int):
            info[key] = event[key]
    if isinstance(event.get("estimate_s"), (int, float)):
        info["estimate_s"] = float(event["estimate_s"])
    return info


class _SlotBroker:
    """The runner's side of one worker's timing slots: a `slot` event is granted from `pool` (waited
    for in a thread, so the worker's pipes keep being read and its limits watched) and answered on the
    worker's reply pipe; `slot_release`, or the worker's end, gives it back. The time spent waiting is
    not the worker's (`paused_s`: the timeout does not count it)."""

    def __init__(self, pool: SlotPool, reply_fd: int, on_wait: Callable[[str], None]):
        self.pool, self.fd, self.on_wait = pool, reply_fd, on_wait
        self.uses: list[SlotUse] = []
        self.held: SlotUse | None = None
        self.closed = False
        self.waited = 0.0
        self.waiting_since: float | None = None
        self.lock = threading.Lock()
        self.group: int | None = None      # the worker's process group, once it runs (a lending pool's tenant)

    def request(self, phase: str) -> None:
        with self.lock:
            if self.held is not None or self.waiting_since is not None:
                return      # one slot at a time: a second request before the release is not the worker's
            self.waiting_since = time.monotonic()
        self.on_wait(phase)
        threading.Thread(target=self._grant, args=(phase, self.waiting_since), daemon=True).start()

    def _grant(self, phase: str, asked: float) -> None:
        slot = self.pool.acquire()
        with self.lock:
            now = time.monotonic()
            self.waited += now - asked
            self.waiting_since = None
            if self.closed:
                self.pool.release(slot)
                return
            self.held = SlotUse(phase, slot, asked, now)
            self.uses.append(self.held)
            self._holding(True)     # before the reply: from now on no lending moves it off the slot
        reply = {"host": slot.host, "index": slot.index, "cores": list(slot.cores),
                 "untimed_cores": list(self.pool.untimed_cores)}
        try:
            os.write(self.fd, (json.dumps(reply) + "\n").encode())
        except OSError:
            self.release()

    def release(self) -> None:
        with self.lock:
            if self.held is not None:
                self.held.released = time.monotonic()
                self._holding(False)
                self.pool.release(self.held.slot)
                self.held = None

    def _holding(self, held: bool) -> None:
        mark = getattr(self.pool, "holding", None)
        if mark is not None and self.group is not None and getattr(self.pool, "lend_idle", False):
            mark(self.group, held)

    def paused_s(self) -> float:
        with self.lock:
            return self.waited + (time.monotonic() - self.waiting_since if self.waiting_since is not None else 0.0)

    def close(self) -> None:
        with self.lock:
            self.closed = True
        self.release()

    def records(self, token: int | None) -> list[dict]:
        nb = self.pool.neighbours
        return [u.record(None if nb is None or token is None else
                         nb.during(u.acquired, u.released if u.released is not None else time.monotonic(), token))
                for u in self.uses]


def _run_all(one: Callable[[int], None], todo: list[int], jobs: int, cancel: threading.Event) -> None:
    """`one(idx)` for every rate point, `jobs` at a time (threads: each waits on its worker process)."""
    if jobs == 1:
        for idx in todo:
            one(idx)
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="jpegai-rate")
    try:
        for fut in [pool.submit(one, idx) for idx in todo]:
            fut.result()
    except BaseException:
        cancel.set()        # every running worker's tree is killed (run_limited), none is started
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _locked(progress: Progress, lock: threading.Lock) -> Progress:
    """`progress` called under `lock`: rate points running at once report through one display."""
    def call(kind: str, info: dict) -> None:
        with lock:
            progress(kind, info)
    return call


def default_pool(cond: TestConditions) -> LocalSlotPool:
    """This machine's timing slots under `cond` (`timing.slots_per_host`, `timing.threads` cores each);
    bad conditions are bad input."""
    try:
        return LocalSlotPool(cond.timing.slots_per_host, cond.timing.threads, lend_idle=cond.timing.lend_idle_slots)
    except ValueError as exc:
        raise InputError("profile.toml", "timing.slots_per_host", str(exc)) from None


def run_rate(sub: Submission, rate_index: int, cond: TestConditions, devices: list[str],
             progress: Progress = _no_progress, seed: int = 0, job_extra: dict | None = None,
             slots: SlotPool | None = None, cancel: threading.Event | None = None,
             zygote: Zygote | None = None) -> RateResult:
    """One rate point in a fresh worker process under the limits of `cond.worker` (forked from `zygote`
    where given, profiler/zygote.py).

    `job_extra` is added to the worker's job: `delivery` (verify: the rate's bitstream and decoded-picture
    folders; see `run_delivery_rate`) or `write_bitstreams` (a folder to write the delivery layout into).
    Its timed phases run in timing slots of `slots` (default: this machine's, `default_pool`). The result
    records the machine it ran on (`host`: where this function runs, a Dask worker's host on a cluster)."""
    slots = default_pool(cond) if slots is None else slots
    if job_extra and job_extra.get("delivery") is not None:
        result = run_delivery_rate(sub, rate_index, cond, devices, progress, seed, job_extra, slots, cancel, zygote)
    else:
        result = _run_worker(sub, rate_index, cond, devices, progress, seed, job_extra, slots, cancel, zygote)[0]
    return result.model_copy(update={"host": HostInfo.model_validate(host_fingerprint())})


def run_delivery_rate(sub: Submission, rate_index: int, cond: TestConditions, devices: list[str],
                      progress: Progress = _no_progress, seed: int = 0, job_extra: dict | None = None,
                      slots: SlotPool | None = None, cancel: threading.Event | None = None,
                      zygote: Zygote | None = None) -> RateResult:
    """A delivery's rate point (verify): a worker that dies on one item fails that item only.

    The worker appends each finished item to a file that outlives it (`delivery.partial`, JSON lines).
    When it crashes, hangs past `worker.timeout_s` or goes over the memory limit while on an item (its
    progress events name the item and the step), that item is recorded as failed with the reason, and a
    fresh worker, under the same limits, takes the finished items from the file (not measured again),
    skips the failed ones and measures the rest; its result is the rate point's. Each item's figures
    come from one worker's own calls: nothing measured is mixed across processes. A worker that dies
    outside an item, or twice on the same one, fails the rate point as `run_rate` does.
    """
    failed: dict[str, dict[str, dict]] = {"cpu": {}, "cuda": {}}
    restarts: list[str] = []
    with tempfile.TemporaryDirectory(prefix="jpegai-delivery-") as keep:
        partial = Path(keep) / "items.jsonl"
        while True:
            delivery = {**job_extra["delivery"], "partial": str(partial), "failed": failed}
            result, item, ex = _run_worker(sub, rate_index, cond, devices, progress, seed,
                                           {**job_extra, "delivery": delivery}, slots, cancel, zygote)
            if item is None or item["name"] in failed[item["phase"]]:
                break
            where = ITEM_STEPS.get(item.get("step") or "", "the measurement of this item")
            kind, reason = failure_reason(ex, where)
            failed[item["phase"]][item["name"]] = {"kind": kind, "reason": reason}
            restarts.append(f"{item['name']}" + (" (GPU)" if item["phase"] == "cuda" else "")
                            + f": {reason}; restarted without it")
    if restarts:
        result = result.model_copy(update={"worker": result.worker.model_copy(update={"restarts": restarts})})
    return result


def _run_worker(sub: Submission, rate_index: int, cond: TestConditions, devices: list[str],
                progress: Progress = _no_progress, seed: int = 0, job_extra: dict | None = None,
                slots: SlotPool | None = None, cancel: threading.Event | None = None,
                zygote: Zygote | None = None) -> tuple[RateResult, dict | None, WorkerExit]:
    """One worker: (its RateResult or the failed one, the item it was on when it died without a result
    ({"name", "phase": cpu|cuda, "step"}, else None), how it exited). Its untimed work runs on the
    pool's untimed cores, each timed phase in one of its slots."""
    rate = next(r for r in sub.rates if r.index == rate_index)
    slots = default_pool(cond) if slots is None else slots
    if getattr(slots, "whole_life", False):
        # Every core is a slot: the worker holds one from before its start to its end (profiler/slots.py).
        slot = slots.acquire()
        try:
            return _run_worker(sub, rate_index, cond, devices, progress, seed, job_extra,
                               WholeLifeSlot(slot, slots.neighbours), cancel, zygote)
        finally:
            slots.release(slot)
    reply_r, reply_w = os.pipe()
    broker = _SlotBroker(slots, reply_w, lambda phase: progress("phase", {
        "rate": rate.target_bpp, "phase": "waiting for a timing slot", "detail": f"({phase})"}))
    nb = slots.neighbours
    token = nb.start(rate.target_bpp) if nb is not None else None
    try:
        return _run_worker_with(sub, rate, cond, devices, progress, seed, job_extra, slots, broker, reply_r, token,
                                cancel, zygote)
    finally:
        broker.close()
        if token is not None:
            nb.end(token)
        for fd in (reply_r, reply_w):
            try:
                os.close(fd)
            except OSError:
                pass


def worker_env(cond: TestConditions) -> dict:
    """The environment a worker (and the zygote it is forked from) starts with."""
    return zygote_worker_env(cond.timing.threads)


def _run_worker_with(sub: Submission, rate, cond: TestConditions, devices: list[str], progress: Progress,
                     seed: int, job_extra: dict | None, slots: SlotPool, broker: _SlotBroker, reply_r: int,
                     token: int | None, cancel: threading.Event | None, zygote: Zygote | None = None
                     ) -> tuple[RateResult, dict | None, WorkerExit]:
    rate_index = rate.index
    last_event: list[str] = []
    group: list[int] = []       # the worker's process group (the launcher's pid), once started
    admitted: list[int] = []    # … once the slot pool lends it the idle slots' cores
    current: dict = {}

    def started(pid: int) -> None:
        group.append(pid)
        broker.group = pid

    def on_progress(line: str) -> None:
        # Only the worker writes this pipe; still, an event is taken field by field, never passed on whole.
        try:
            event = json.loads(line)
        except ValueError:
            return
        if not isinstance(event, dict) or event.get("event") not in WORKER_EVENTS:
            return
        kind = event["event"]
        if group and not admitted and getattr(slots, "lend_idle", False):
            # Its first event: the launcher has set its CPUs, so the idle slots' cores may be lent now.
            admitted.append(group[0])
            slots.admit(group[0])
        if kind == "slot":
            broker.request("gpu" if event.get("phase") == "gpu" else "cpu")
            return
        if kind == "slot_release":
            broker.release()
            return
        if kind == "step":
            step = event.get("part")
            if current and step in ITEM_STEPS:
                current["step"] = step
            elif step == "done":
                current.clear()
            return
        info: dict = {"rate": rate.target_bpp}
        if kind == "image":
            if not isinstance(event.get("name"), str):
                return
            info.update(name=event["name"][:200], n=event.get("n") if isinstance(event.get("n"), int) else None)
            current.clear()
            current.update(name=info["name"], phase="cuda" if event.get("phase") == "cuda" else "cpu",
                           step="cuda" if event.get("phase") == "cuda" else None)
        elif kind == "phase":
            phase = _phase_info(event)
            if not phase:
                return
            info.update(phase)
            if "image" not in phase:    # a picture's phases keep the picture as the current item
                current.clear()
        else:
            current.clear()
            if kind == "start" and isinstance(event.get("images"), int):
                info["images"] = event["images"]
        if kind == "image":
            last_event.append(f"image {info['name']}")
        elif kind == "phase":   # a picture's phases keep the picture as the stage
            last_event.append(f"image {info['image']}" if "image" in info else info["phase"])
        else:
            last_event.append(kind)
        progress(kind, info)

    with _sigterm_unwinds(), tempfile.TemporaryDirectory(prefix="jpegai-worker-") as tmp:
        job_path = Path(tmp) / "job.json"
        out_path = Path(tmp) / "result.json"
        job_path.write_text(json.dumps({"submission": str(sub.directory), "rate_index": rate_index,
                                        "conditions": cond.to_dict(), "devices": devices, "seed": seed,
                                        **(job_extra or {})}))
        env = worker_env(cond)
        try:
            ex = run_limited("profiler.worker", [str(job_path), str(out_path)], timeout_s=cond.worker.timeout_s,
                             memory_limit_mib=cond.worker.memory_limit_mib, rlimit_data=use_rlimit_data(devices),
                             env=env, cwd=tmp, on_progress=on_progress, slot_fd=reply_r, paused_s=broker.paused_s,
                             cpus=slots.untimed_cores, cancel=cancel, on_start=started, zygote=zygote)
        finally:
            if admitted:    # its group is gone: never re-pinned again (its number may be reused)
                slots.leave(admitted[0])
        broker.release()
        lent = getattr(slots, "lend_idle", False)
        worker_info = {"seed": seed, "limits": ex.limits, "returncode": ex.returncode,
                       "started_from": ex.started_from,
                       "slots": broker.records(token), "cpus": list(slots.untimed_cores),
                       "lent_cores": sorted({c for s in slots.slots for c in s.cores}) if lent else None}
        if out_path.is_file() and not ex.timed_out and ex.memory_exceeded_mib is None and ex.returncode == 0:
            result = RateResult.model_validate_json(out_path.read_text())
            # Validated, not copied in (a dict in a typed field warns on every later dump).
            worker = WorkerInfo.model_validate({**result.worker.model_dump(mode="json"),
                                                **{k: v for k, v in worker_info.items() if v is not None}})
            error = None if result.error is None else result.error.model_copy(update={"stderr_tail": ex.stderr_tail})
            return result.model_copy(update={"worker": worker, "error": error}), None, ex
    kind, reason = failure_reason(ex, last_event[-1] if last_event else None)
    return (RateResult(index=rate.index, target_bpp=rate.target_bpp, status="failed",
                       error=ErrorRecord(kind=kind, stage=last_event[-1] if last_event else "worker start",
                                         message=reason, stderr_tail=ex.stderr_tail),
                       worker=WorkerInfo.model_validate({**worker_info, "wall_s": ex.wall_s})),
            dict(current) if current.get("name") else None, ex)


def new_report(sub: Submission, cond: TestConditions, options: dict) -> Report:
    total, each = files_fingerprint(sub.directory)
    submission = {**sub.to_dict(), "files_sha256": total, "files": each}
    return Report(submission=submission, conditions=cond.to_dict(), options=options,
                  environment=fingerprint(submission["files_sha256"], cond.timing.threads),
                  # Whether each metric is measured is the workers' to say (_with_rates): they import the
                  # metric packages anyway; importing them here cost this command ~2 s of CPU at its start,
                  # beside the first workers, and said nothing about a cluster's workers.
                  metrics=metric_info(pending=True),
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


def changed_files(old: dict[str, str], now: dict[str, str]) -> tuple[str | None, list[str]]:
    """(the first file of `old` changed or removed in `now`, as "NAME changed" / "NAME was removed", or
    None; the files of `now` that `old` does not have). Both map relative paths to sha256."""
    for name in sorted(old):
        if name not in now:
            return f"{name} was removed", sorted(set(now) - set(old))
        if now[name] != old[name]:
            return f"{name} changed", sorted(set(now) - set(old))
    return None, sorted(set(now) - set(old))


def _files_unchanged(old: Report, fresh: Report, path: Path) -> tuple[str | None, str]:
    """(why not to resume, or None; a note on the files left out of the comparison). The files of the
    submission as the old profile began are compared one by one, so a file the codec created in its
    directory during that run (a cache) does not stop the resume; a report without per-file digests
    (older) is compared by its whole fingerprint."""
    if not old.submission.files:
        if old.submission.files_sha256 != fresh.submission.files_sha256:
            return f"not resuming: the submission's files changed since {path} was written; starting over", ""
        return None, ""
    change, new = changed_files(old.submission.files, fresh.submission.files)
    if change:
        return (f"not resuming: the submission's file {change} since {path} was written "
                "(its files are compared as they were when that profile began); starting over"), ""
    if not new:
        return None, ""
    shown = ", ".join(new[:3]) + (f" and {len(new) - 3} more" if len(new) > 3 else "")
    return None, f"; {len(new)} file(s) not there when it began are left out of the comparison ({shown})"


def resume_plan(path: Path, fresh: Report, rate_indices: list[int]) -> tuple[dict[int, RateResult], str, Report]:
    """`resumable`, and the fresh report as the resumed profile writes it: when the old report is
    continued, it keeps that report's fingerprint of the submission (the files as the profile first
    began), so files the codec created since never enter it."""
    done, notice, old = _resume(path, fresh, rate_indices)
    if old is None:
        return done, notice, fresh
    submission = fresh.submission.model_copy(update={"files_sha256": old.submission.files_sha256,
                                                     "files": old.submission.files})
    environment = fresh.environment.model_copy(update={"submission_files_sha256": old.submission.files_sha256})
    return done, notice, fresh.model_copy(update={"submission": submission, "environment": environment})


def resumable(path: Path, fresh: Report, rate_indices: list[int]) -> tuple[dict[int, RateResult], str]:
    """The finished rate points of the report at `path` that a resumed profile may keep, and a one-line
    notice saying what happens. Kept only when the submission's files, the test conditions, the devices
    and the machine are what they were; failed rate points are run again."""
    done, notice, _ = _resume(path, fresh, rate_indices)
    return done, notice


def _resume(path: Path, fresh: Report, rate_indices: list[int]) -> tuple[dict[int, RateResult], str, Report | None]:
    """`resumable`, and the old report when it is continued (None when the profile starts over)."""
    if not path.is_file():
        return {}, f"nothing to resume at {path}: starting a new profile", None
    try:
        old = read_report(path)
    except InputError as exc:
        return {}, f"not resuming: {exc}; starting over", None
    refused, files_note = _files_unchanged(old, fresh, path)
    if refused:
        return {}, refused, None
    old_cond = old.conditions.model_dump(mode="json", exclude={"source"})
    new_cond = fresh.conditions.model_dump(mode="json", exclude={"source"})
    diff = _first_difference(old_cond, new_cond)
    if diff:
        return {}, f"not resuming: the test conditions changed ({diff}); starting over", None
    diff = _first_difference(old.options.devices, fresh.options.devices)
    if diff:
        return {}, f"not resuming: the devices changed ({diff}); starting over", None
    diff = _first_difference({k: getattr(old.environment, k) for k in RESUME_ENVIRONMENT_KEYS},
                             {k: getattr(fresh.environment, k) for k in RESUME_ENVIRONMENT_KEYS})
    if diff:
        return {}, f"not resuming: the machine or software changed ({diff}); starting over", None
    targets = {r.index: r.target_bpp for r in old.rates}
    wanted = {r.index: r.target_bpp for r in fresh.submission.rates if r.index in rate_indices}
    done = {r.index: r for r in old.rates if r.ok and r.index in wanted and wanted[r.index] == targets[r.index]}
    failed = [r.target_bpp for r in old.rates if not r.ok and r.index in wanted]
    todo = len(rate_indices) - len(done)
    notice = (f"resuming {path}: {len(done)} rate point(s) done"
              + (f" ({', '.join(f'{done[i].target_bpp:g}' for i in sorted(done))} bpp)" if done else "")
              + f", {todo} to run" + (f" (failed before, run again: {', '.join(f'{t:g}' for t in failed)} bpp)"
                                      if failed else "")) + files_note
    return done, notice, old


def _unavailable_on(said: list[RateResult]) -> dict[str, str]:
    """Metric key → why it is not measured, from the workers that said (`metrics_unavailable`): the first
    reason, and where other workers could compute it (a cluster's machines differ), the rate points
    whose pictures lack it — their curves are the ones a BD-rate cannot use."""
    out: dict[str, str] = {}
    for key in dict.fromkeys(k for r in said for k in r.environment.metrics_unavailable):
        lacking = [r for r in said if key in r.environment.metrics_unavailable]
        why = lacking[0].environment.metrics_unavailable[key]
        if len(lacking) < len(said):
            why += (f" (on the workers of {', '.join(f'{r.target_bpp:g}' for r in lacking)} bpp; "
                    f"{len(said) - len(lacking)} other rate point(s) have it)")
        out[key] = why
    return out


def _with_rates(report: Report, rates: list[RateResult], **run) -> Report:
    """The report with these rate points (sorted by rate), the environment folded, the metrics map's
    `measured` from the workers that said (a metric one of them could not compute is not measured), the
    summary fresh."""
    env = report.environment.model_dump(mode="json")
    said = [r for r in rates if r.environment.metrics_unavailable is not None]
    for r in rates:
        env = merge_worker(env, r.environment.model_dump(mode="json"))
    metrics = report.metrics if not said else {
        k: MetricInfo.model_validate(v) for k, v in metric_info(_unavailable_on(said)).items()}
    updated = report.model_copy(update={"rates": sorted(rates, key=lambda r: r.target_bpp),
                                        "environment": Environment.model_validate(env), "metrics": metrics,
                                        "run": report.run.model_copy(update=run)})
    return derive.with_summary(updated)


def overlapping_jobs(slots: SlotPool, jobs: int) -> int:
    """How many rate points may run at once under `slots` (profiler/slots.py): `jobs` where their untimed
    work has cores of its own, at most one per slot where each worker holds its slot for its whole life,
    else one."""
    jobs = max(1, int(jobs))
    if getattr(slots, "can_overlap", True):
        return jobs
    if getattr(slots, "whole_life", False):
        return min(jobs, len(slots.slots))
    return 1


def profile(sub: Submission, cond: TestConditions, out_dir: Path, rate_indices: list[int], devices: list[str],
            progress: Progress = _no_progress, options: dict | None = None, resume: bool = False,
            seed: int = 0, job_extra: dict[int, dict] | None = None, verification: dict | None = None,
            jobs: int = 1, slots: SlotPool | None = None, zygote: Zygote | None = None) -> Report:
    """Profile the given rate points; the report is rewritten at `out_dir/report.json` before the first
    and after each, atomically, so it is valid whenever the profile is killed.

    With `resume`, finished rate points of an existing report there are kept and not run again (see
    `resumable`); a `resume` progress event carries the one-line notice.
    With `jobs` > 1, up to `jobs` rate points' workers run at once: their timed phases in the timing
    slots of `slots` (default: this machine's, `default_pool`), their untimed work on the other cores.
    `zygote`: one the caller started (and closes), for `worker.zygote`; otherwise one is started here.
    """
    report = new_report(sub, cond, {**(options or {}), "devices": devices})
    if verification is not None:     # verify: the delivery's own section, in the report from the start
        from .model.report import Verification

        report = report.model_copy(update={"verification": Verification.model_validate(verification)})
    path = out_dir / "report.json"
    done: dict[int, RateResult] = {}
    if resume:
        done, notice, report = resume_plan(path, report, rate_indices)
        progress("resume", {"message": notice, "kept": sorted(done)})
    planned = [r.target_bpp for r in sub.rates if r.index in rate_indices]
    report = report.model_copy(update={"run": RunInfo(
        state="running", seed=seed, planned_rates=planned, resumed_rates=sorted(r.target_bpp for r in done.values()),
        limits={"timeout_s": cond.worker.timeout_s, "memory_limit_mib": cond.worker.memory_limit_mib})})
    rates = list(done.values())
    report = _with_rates(report, rates)
    write_report(report, path)
    slots = default_pool(cond) if slots is None else slots
    jobs = overlapping_jobs(slots, jobs)
    lock = threading.Lock()
    cancel = threading.Event()
    state = {"report": report}
    preload_asked: set[str] = set()     # modules the zygote was asked to import

    def one(idx: int) -> None:
        rate = next(r for r in sub.rates if r.index == idx)
        with lock:
            progress("rate", {"rate": rate.target_bpp})
            # The finished rate points' networks and counts, so a worker running the same networks takes
            # their resolution counts and cross-check instead of repeating them (counting/reuse.py).
            extra = {**((job_extra or {}).get(idx) or {}), "earlier": earlier_entries(rates), "share_dir": share}
        result = run_rate(sub, idx, cond, devices, _locked(progress, lock), seed=seed, job_extra=extra,
                          slots=slots, cancel=cancel, zygote=zygote)
        imported = set(result.environment.submission_modules)
        if zygote is not None and imported - preload_asked:
            # The later workers find the installed packages this one's submission imported already there:
            # the very modules it imported, each found in an installed distribution's files (never a
            # folder of the working directory, nor every top-level name a distribution claims).
            preload_asked.update(imported)
            zygote.preload(sorted(imported))
        with lock:
            rates.append(result)
            state["report"] = _with_rates(state["report"], rates)
            write_report(state["report"], path)
            progress("rate_done", {"rate": rate.target_bpp, "status": result.status})

    # Rate points running at once publish their resolution counts and cross-check here, for those running
    # the same networks (worker._sharing): shared as with the finished ones' `earlier`.
    share_dir = tempfile.TemporaryDirectory(prefix="jpegai-share-")
    share = share_dir.name
    todo = []
    for idx in rate_indices:
        if idx in done:
            rate = next(r for r in sub.rates if r.index == idx)
            progress("rate_done", {"rate": rate.target_bpp, "status": "ok", "resumed": True})
        else:
            todo.append(idx)
    # The runner's own threads (the workers' watchdogs poll every 50 ms) stay off the timing slots' cores.
    runner_cpus = allowed_cpus()
    if getattr(slots, "can_overlap", False) and runner_cpus:
        pin_process(slots.untimed_cores)
    # Started here, by the thread that runs the whole profile (its parent-death signal follows this
    # thread), unless the caller started it earlier (the command line, before its own imports) and
    # closes it itself.
    given = zygote
    if zygote is None:
        zygote = Zygote(worker_env(cond)) if cond.worker.zygote and todo else None
    elif not cond.worker.zygote:
        zygote = None
    if zygote is not None and getattr(slots, "can_overlap", False) and runner_cpus:
        zygote.pin(slots.untimed_cores)
    try:
        _run_all(one, todo, jobs, cancel)
    finally:
        if zygote is not None and given is None:
            zygote.close()
        share_dir.cleanup()
        if getattr(slots, "can_overlap", False) and runner_cpus:
            pin_process(runner_cpus)
    report = state["report"]

    report = _with_rates(report, rates, state="complete")
    write_report(report, path)
    return report
