"""A process that has imported torch and the suite once and forks each rate point's worker from there.

A fresh interpreter spends ~2.3 s importing torch and the suite before a worker can build its model
(~1.9 s of it torch): nine times per profile, on the cores the untimed work shares. The zygote pays it
once. The runner starts it at the start of a profile, from the profile's own thread, with the workers'
environment; it imports and then only forks, so no thread of its own (OpenMP's included) exists when it
forks: it runs no tensor operation.

Each spawn request carries what `subprocess.Popen` would have been given (the launcher's code and
arguments, the environment, the working directory, the output pipe and the pipes named in the
environment, passed as file descriptors over a Unix socket). The zygote forks; the child starts a new
session, takes the pipes as its standard output and error and the environment as its own, closes every
other descriptor and runs the launcher (profiler/runner.py) exactly as `python -c` would have: the
launcher then sets the limits, forks its watcher and worker and runs the worker module as `__main__`.
The zygote answers with the child's pid and a pidfd (the runner signals the child through it: its pid
cannot be reused before the zygote reaps it), and, once it has reaped the child, with its wait status.

What the worker sees differs from a fresh interpreter only in what was already imported: torch, the
suite's modules and the packages of its steps, and once a worker has finished, the installed packages
its submission imported (CompressAI: ~1.8 s per worker), which the runner then asks the zygote to
import (`preload`): the top-level modules that worker imported and found in an installed distribution's
files (`environment.installed_modules`, the report's `submission_modules`), never every name a
distribution claims (wheels that ship `tests` or `docs` folders claim those). The submission's own files
and the working directory's folders are never loaded in the zygote, and a worker lists the
preloaded packages among what its submission imported (`submission_imported`, as a fresh one would).
An import that starts a thread ends the zygote's service: the later workers are fresh interpreters.
Pages of the libraries the worker never touches again are not in its resident set.

Lifetime: the zygote has PR_SET_PDEATHSIG = SIGKILL, and ends when the runner closes its control
socket. Its children have PR_SET_PDEATHSIG = SIGTERM (the launcher's): when the zygote dies the watchers
end their workers, as they do when the runner dies without a zygote.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

FD_ENV = "JPEGAI_ZYGOTE_FD"
PARENT_ENV = "JPEGAI_ZYGOTE_PARENT"
PRELOADED_ENV = "JPEGAI_ZYGOTE_PRELOADED"   # in a worker: the submission's packages the zygote had imported
MAX_MESSAGE = 1 << 20
MAX_FDS = 8
READY_TIMEOUT_S = 120.0       # importing torch on a loaded machine; past it workers start as before
SPAWN_TIMEOUT_S = 120.0       # a fork answers in milliseconds; a preload's import may delay it this long
_STATUS = struct.Struct("=i")


def worker_env(threads: int) -> dict:
    """The environment a worker (and the zygote it is forked from) starts with: this process's, with the
    suite importable and OpenMP/MKL kept to the timed calls' `threads` (the worker sets torch's itself)."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(threads))
    env.setdefault("MKL_NUM_THREADS", str(threads))
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(Path(__file__).resolve().parent.parent),
                                                    env.get("PYTHONPATH", "")] if p)
    return env


def _prctl(option: int, value: int) -> bool:
    try:
        import ctypes
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except Exception:
        return False


def _preload() -> None:
    """What every worker imports before it builds a model: torch, the suite's worker module with all it
    imports, and what the suite's steps import on first use (`worker.suite_imports`). The worker module
    itself is taken out of `sys.modules` again: the launcher runs it as `__main__` (runpy warns, and runs
    a second copy, where it is already imported)."""
    import torch  # noqa: F401
    import profiler.worker

    profiler.worker.suite_imports()
    from profiler.environment import packages_distributions

    packages_distributions()    # what each worker reads to name its submission's packages, read once

    sys.modules.pop("profiler.worker", None)
    package = sys.modules.get("profiler")
    if package is not None and hasattr(package, "worker"):
        delattr(package, "worker")


def _child(request: dict, fds: list[int]) -> None:
    """In the forked child: become what `Popen([python, -c, launcher, *argv], ...)` would have started,
    run the launcher, never return."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setsid()
        out = fds[request["stdout"]]
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        env = dict(request["env"])
        keep = {0, 1, 2}
        for name, index in request["fd_env"].items():
            os.set_inheritable(fds[index], True)
            env[name] = str(fds[index])
            keep.add(fds[index])
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass
        if request.get("cwd"):
            os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(env)
        sys.argv = ["-c", *request["argv"]]
        import faulthandler
        faulthandler.enable()           # what `-X faulthandler` gives a fresh interpreter, on the new fd 2
        namespace = {"__name__": "__main__", "__builtins__": __builtins__}
        exec(compile(request["launcher"], "<string>", "exec"), namespace)   # noqa: S102 — the suite's own code
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
    except BaseException:   # noqa: BLE001 — as an uncaught exception ends a fresh interpreter
        import traceback
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code & 0xFF)


def serve() -> None:
    """The zygote's main loop (started by `Zygote`): preload, say ready, then fork on each request."""
    import selectors

    control = socket.socket(fileno=int(os.environ.pop(FD_ENV)))
    parent = int(os.environ.pop(PARENT_ENV, "0") or 0)
    _prctl(1, signal.SIGKILL)                    # PR_SET_PDEATHSIG: never outlives the runner's thread
    if parent and os.getppid() != parent:
        os._exit(70)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _preload()
    why = "a thread started while importing" if threading.active_count() != 1 else ""
    try:
        os.close(os.pidfd_open(os.getpid()))    # Linux ≥ 5.3: the runner signals children through pidfds
    except (AttributeError, OSError) as exc:
        why = f"no pidfd: {exc}"
    if why:                                      # refuse to serve: the runner starts fresh interpreters
        control.send(json.dumps({"ready": False, "why": why}).encode())
        os._exit(0)
    control.send(json.dumps({"ready": True, "pid": os.getpid()}).encode())
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(wake_w)
    children: dict[int, socket.socket] = {}
    preloaded: list[str] = []
    serving = True
    sel = selectors.DefaultSelector()
    sel.register(control, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    running = True
    while running or children:
        for key, _ in sel.select(1.0):
            if key.fileobj is control:
                try:
                    msg, fds, _, _ = socket.recv_fds(control, MAX_MESSAGE, MAX_FDS)
                except OSError:
                    msg, fds = b"", []
                if not msg:
                    running = False             # the runner closed it: serve the running children out
                    sel.unregister(control)
                    continue
                request = json.loads(msg)
                if "preload" in request:
                    serving = serving and _preload_packages(request["preload"], preloaded)
                elif serving:
                    _spawn(request, fds, children, preloaded)
                else:                           # a preload started a thread: the runner starts it afresh
                    _refuse(fds)
            else:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = children.pop(pid, None)
            if conn is not None:
                try:
                    conn.send(_STATUS.pack(status))
                except OSError:
                    pass
                conn.close()
    os._exit(0)


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1


def _preload_packages(modules: list[str], preloaded: list[str]) -> bool:
    """Import the installed packages an earlier worker's submission imported (top-level module names;
    never the submission's own files: the runner sends only modules an installed distribution provides).
    False where an import started a thread (native ones included): forking is then no longer safe."""
    import importlib

    before = _threads()
    for name in modules:
        if name in preloaded or not isinstance(name, str):
            continue
        try:
            importlib.import_module(name)
        except BaseException:   # noqa: BLE001 — left to the worker's own import, which reports it
            continue
        preloaded.append(name)
    return _threads() == before and threading.active_count() == 1


def _refuse(fds: list[int]) -> None:
    conn = socket.socket(fileno=fds[0])
    try:
        conn.send(json.dumps({"error": "not serving"}).encode())
    except OSError:
        pass
    conn.close()
    for fd in fds[1:]:
        os.close(fd)


def _spawn(request: dict, fds: list[int], children: dict, preloaded: list[str]) -> None:
    if preloaded:   # the worker lists them among what its submission imported (worker_environment)
        request = {**request, "env": {**request["env"], PRELOADED_ENV: ",".join(preloaded)}}
    conn = socket.socket(fileno=fds[0])
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        pid = os.fork()
    except OSError as exc:
        conn.send(json.dumps({"error": f"fork: {exc}"}).encode())
        conn.close()
        for fd in fds[1:]:
            os.close(fd)
        return
    if pid == 0:
        _child(request, fds)
    pidfd = os.pidfd_open(pid)      # before the child can be reaped: the runner signals through it
    try:
        socket.send_fds(conn, [json.dumps({"pid": pid}).encode()], [pidfd])
    except OSError:
        pass
    os.close(pidfd)
    for fd in fds[1:]:
        os.close(fd)
    children[pid] = conn


class ZygoteChild:
    """A worker's launcher started by the zygote, with the part of `subprocess.Popen`'s interface the
    runner uses: pid, stdout, poll, wait, kill, returncode (negative: the signal that ended it)."""

    def __init__(self, pid: int, pidfd: int, conn: socket.socket, stdout):
        self.pid = pid
        self.stdout = stdout
        self.returncode: int | None = None
        self._pidfd = pidfd
        self._conn = conn

    def _take(self, data: bytes) -> None:
        if len(data) == _STATUS.size:
            status = _STATUS.unpack(data)[0]
            self.returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        else:   # the zygote is gone before it could reap the child (killed with it): as killed
            self.returncode = -signal.SIGKILL
        self._conn.close()
        try:
            os.close(self._pidfd)
        except OSError:
            pass

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                data = self._conn.recv(64, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return None
            except OSError:
                data = b""
            self._take(data)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._conn.settimeout(timeout)
            try:
                data = self._conn.recv(64)
            except TimeoutError:
                raise subprocess.TimeoutExpired("zygote child", timeout) from None
            except OSError:
                data = b""
            self._take(data)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except OSError:
                pass


class Zygote:
    """The runner's side: start the zygote (`env` as the workers'), then `spawn` a launcher per worker.
    `spawn` returns None where the zygote cannot serve (it failed to start or died): the caller starts
    the worker as a fresh interpreter instead."""

    def __init__(self, env: dict, cwd: str | Path | None = None):
        self._lock = threading.Lock()
        self._ready: bool | None = None
        self._forked = 0                           # workers it forked: it must outlive them to reap them
        self.pid: int | None = None
        self._control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {**env, FD_ENV: str(theirs.fileno()), PARENT_ENV: str(os.getpid())}
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-X", "faulthandler", "-c", "from profiler.zygote import serve; serve()"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd,
                start_new_session=True, pass_fds=(theirs.fileno(),))
        except OSError:
            self._proc = None
            self._ready = False
        theirs.close()

    def ready(self) -> bool:
        """Whether it serves (waits for it to have imported, the first time)."""
        if self._ready is None:
            self._control.settimeout(READY_TIMEOUT_S)
            try:
                reply = json.loads(self._control.recv(MAX_MESSAGE) or b"{}")
            except (OSError, ValueError):
                reply = {}
            self._control.settimeout(None)
            self._ready = bool(reply.get("ready"))
            self.pid = reply.get("pid") if self._ready else None
            if not self._ready:
                self.close()
        return self._ready

    def spawn(self, launcher: str, argv: list[str], env: dict, cwd: str | Path | None, stdout_w: int,
              fd_env: dict[str, int]) -> ZygoteChild | None:
        """Start `python -c launcher *argv` from the zygote with `stdout_w` as its stdout and stderr and
        each fd of `fd_env` (env name → fd) passed under that name. None: start it some other way."""
        with self._lock:
            if not self.ready():
                return None
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            passed = [theirs.fileno(), stdout_w, *fd_env.values()]
            request = {"launcher": launcher, "argv": list(argv), "cwd": str(cwd) if cwd else None,
                       "env": {**env, "JPEGAI_WORKER_PARENT": str(self.pid)}, "stdout": 1,
                       "fd_env": {name: 2 + i for i, name in enumerate(fd_env)}}
            try:
                socket.send_fds(self._control, [json.dumps(request).encode()], passed)
            except OSError:
                theirs.close()
                ours.close()
                self._ready = False
                return None
            theirs.close()
        ours.settimeout(SPAWN_TIMEOUT_S)
        try:
            msg, fds, _, _ = socket.recv_fds(ours, MAX_MESSAGE, 1)
            reply = json.loads(msg) if msg else {}
        except TimeoutError:
            # Stuck (in a preload's import): ended, so it cannot fork this worker late; fresh ones from now.
            self._ready = False
            if self._proc is not None:
                self._proc.kill()
            reply, fds = {}, []
        except (OSError, ValueError):
            reply, fds = {}, []
        ours.settimeout(None)
        if "pid" not in reply or not fds:
            for fd in fds:
                os.close(fd)
            ours.close()
            return None
        self._forked += 1
        return ZygoteChild(int(reply["pid"]), fds[0], ours, None)

    def preload(self, modules: list[str]) -> None:
        """Have the zygote import these top-level modules of installed packages (what an earlier worker's
        submission imported), for the workers forked after; those workers still list them as imported by
        the submission. Never blocks on the imports."""
        with self._lock:
            if modules and self._ready:
                try:
                    self._control.send(json.dumps({"preload": list(modules)}).encode())
                except OSError:
                    self._ready = False

    def pin(self, cores) -> None:
        """Every thread of the zygote on `cores` (the runner's untimed cores): the workers it forks from now
        start there, as a fresh interpreter started by the pinned runner would. The zygote may have been
        started before the runner pinned itself (the command line starts it first, so its imports overlap
        the command's own)."""
        proc = self._proc
        if proc is None or not cores:
            return
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task")]
        except OSError:
            tids = [proc.pid]
        for tid in tids:
            try:
                os.sched_setaffinity(tid, set(int(c) for c in cores))
            except (OSError, AttributeError):
                pass

    def close(self) -> None:
        """End the zygote: it serves its running children out, then exits. One that never forked a worker
        is killed at once: it may still be importing torch (the command line starts it before it checks
        its input), and a refused input must not wait for that."""
        self._ready = False                        # spawn from now: None, a fresh interpreter
        try:
            self._control.close()
        except OSError:
            pass
        proc, self._proc = self._proc, None
        if proc is not None and not self._forked:
            proc.kill()
            proc.wait()
        elif proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
