"""Worker isolation and limits (profiler/runner.py).

Fast tests run small plain-Python children through `run_limited` (no torch: a fraction of a second
each). The slow tests profile the misbehaving fixture codecs end to end: in each, one rate point
raises, aborts, hangs or over-allocates, and the other rate point still completes.
"""

import json
import sys
import textwrap
from pathlib import Path

import pytest

from profiler.conditions import TestConditions
from profiler.runner import failure_reason, run_limited, worker_env
from profiler.zygote import Zygote

from conftest import SMOKE_CONFIG, CODECS, run_cli


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "child.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


@pytest.fixture(scope="module")
def zygote():
    z = Zygote(worker_env(TestConditions()))
    assert z.ready()
    yield z
    z.close()


@pytest.fixture(params=["fresh interpreter", "zygote"])
def start(request):
    """Each limit holds for a worker started either way: a fresh interpreter, or forked from the zygote
    (profiler/zygote.py); `start` is None for the first, the zygote for the second."""
    return request.getfixturevalue("zygote") if request.param == "zygote" else None


def _run(tmp_path, body, timeout_s=30.0, memory_limit_mib=4096, rlimit_data=True, start=None):
    ex = run_limited(_script(tmp_path, body), [], timeout_s=timeout_s, memory_limit_mib=memory_limit_mib,
                     rlimit_data=rlimit_data, cwd=tmp_path, zygote=start)
    assert ex.started_from == ("zygote" if start is not None else "fresh interpreter")
    return ex


def test_clean_exit_and_stderr_tail(tmp_path, start):
    ex = _run(tmp_path, start=start, body="""
        import sys
        for i in range(100):
            print(f"line {i}", file=sys.stderr)
    """)
    assert ex.returncode == 0 and not ex.timed_out and ex.memory_exceeded_mib is None
    # Only the last 40 lines are kept.
    assert ex.stderr_tail.splitlines() == [f"line {i}" for i in range(60, 100)]


def test_segfault_recorded_with_python_stack(tmp_path, start):
    ex = _run(tmp_path, start=start, body="""
        import ctypes
        def deep_in_the_codec():
            ctypes.string_at(0)          # reads address 0: SIGSEGV
        deep_in_the_codec()
    """)
    assert ex.returncode == -11
    # -X faulthandler: the Python stack of the crash is in the tail.
    assert "Segmentation fault" in ex.stderr_tail and "deep_in_the_codec" in ex.stderr_tail
    kind, reason = failure_reason(ex, "image coffee")
    assert kind == "crash" and reason == "worker crashed during image coffee: SIGSEGV (segmentation fault)"


def test_abort_recorded(tmp_path, start):
    ex = _run(tmp_path, start=start, body="import os\nos.abort()\n")
    assert ex.returncode == -6
    assert failure_reason(ex, None) == ("crash", "worker crashed before the submission was loaded: SIGABRT (abort)")


def test_hang_is_killed_at_the_timeout(tmp_path, start):
    ex = _run(tmp_path, start=start, body="""
        import time, sys
        print("started", file=sys.stderr, flush=True)
        time.sleep(600)
    """, timeout_s=1.5)
    assert ex.timed_out and ex.returncode == -9
    assert 1.5 <= ex.wall_s < 10
    assert ex.stderr_tail == "started"
    assert failure_reason(ex, "image chelsea")[0] == "timeout"
    assert "timed out after 1.5 s during image chelsea" in failure_reason(ex, "image chelsea")[1]


def test_rss_watchdog_kills_memory_rlimit_data_does_not_count(tmp_path, start):
    # Shared anonymous memory is not counted by RLIMIT_DATA; the resident-set watchdog catches it.
    ex = _run(tmp_path, start=start, body="""
        import mmap, time
        m = mmap.mmap(-1, 400 * 1024 * 1024, flags=mmap.MAP_SHARED)
        for off in range(0, len(m), 4096):
            m[off] = 1
        time.sleep(30)
    """, memory_limit_mib=150)
    assert ex.memory_exceeded_mib is not None and ex.memory_exceeded_mib > 150
    assert ex.returncode == -9 and not ex.timed_out and ex.wall_s < 20
    kind, reason = failure_reason(ex, "build")
    assert kind == "memory" and "> 150 MiB" in reason and "during build" in reason


def test_rlimit_data_fails_the_allocation_inside_the_child(tmp_path, start):
    ex = _run(tmp_path, start=start, body="""
        try:
            block = bytearray(600 * 1024 * 1024)
        except MemoryError:
            raise SystemExit(42)
    """, memory_limit_mib=300)
    assert ex.returncode == 42 and ex.memory_exceeded_mib is None
    assert ex.limits["memory_enforced_by"] == ["RLIMIT_DATA", "RSS watchdog"]


def test_children_of_the_worker_are_killed_with_it(tmp_path, start):
    pidfile = tmp_path / "grandchild.pid"
    ex = _run(tmp_path, start=start, body=f"""
        import subprocess, sys, time
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(pidfile)!r}, "w").write(str(p.pid))
        time.sleep(600)
    """, timeout_s=2)
    assert ex.timed_out
    import psutil

    pid = int(pidfile.read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


# -- end to end: one rate point misbehaves, the other completes ------------------------------------------

CONFIG = SMOKE_CONFIG


def _profile(tmp_path, fixture, *extra):
    config = tmp_path / "profile.toml"
    config.write_text(CONFIG)
    out = tmp_path / "out"
    proc = run_cli(str(CODECS / fixture), "--config", str(config), "--out", str(out), "--device", "cpu", *extra)
    report = json.loads((out / "report.json").read_text())
    return proc, report


def _check_one_failed(proc, report, kind):
    assert proc.returncode == 1, proc.stderr
    good, bad = report["rates"]
    assert good["target_bpp"] == 0.5 and good["status"] == "ok" and good["error"] is None
    # The good rate point is fully measured: the tiny codec's hand-counted parameters (tests/test_params.py).
    assert good["params"]["encoder"] == 136 and good["params"]["decoder"] == 300
    assert [i["name"] for i in good["images"]] == ["chelsea"]
    assert bad["target_bpp"] == 1.0 and bad["status"] == "failed" and bad["error"]["kind"] == kind
    assert report["run"]["state"] == "complete"
    assert report["summary"]["rate_points"] == 2 and report["summary"]["rate_points_ok"] == 1
    lines = [l for l in proc.stderr.splitlines() if l.startswith("jpegai-profile: rate")]
    assert len(lines) == 1 and lines[0].startswith(f"jpegai-profile: rate 1 bpp failed ({kind}): ")
    return bad["error"]


@pytest.mark.slow
def test_codec_that_raises(tmp_path):
    proc, report = _profile(tmp_path, "raises")
    err = _check_one_failed(proc, report, "submission")
    assert err["stage"] == "encode" and "KeyError: 17" in err["message"]
    # The submission's traceback, down to its own frame.
    assert "_entropy_model_lookup" in err["traceback"] and "raises/codec.py" in err["traceback"]
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_codec_that_aborts(tmp_path):
    proc, report = _profile(tmp_path, "aborts")
    err = _check_one_failed(proc, report, "crash")
    assert err["message"] == "worker crashed during image chelsea: SIGABRT (abort)"
    assert "native entropy coder failed an assertion" in err["stderr_tail"]
    assert "Fatal Python error: Aborted" in err["stderr_tail"]


@pytest.mark.slow
def test_codec_that_hangs(tmp_path):
    proc, report = _profile(tmp_path, "hangs", "--timeout", "40")
    err = _check_one_failed(proc, report, "timeout")
    assert err["message"].startswith("timed out after 40 s during image chelsea")
    assert 40 <= report["rates"][1]["worker"]["wall_s"] < 70
    assert report["run"]["limits"]["timeout_s"] == 40


@pytest.mark.slow
def test_codec_that_overallocates(tmp_path):
    proc, report = _profile(tmp_path, "overallocates", "--memory-limit", "3072")
    err = _check_one_failed(proc, report, "memory")
    assert "3072 MiB" in err["message"] and "can't allocate memory" in err["message"]
    assert report["rates"][1]["worker"]["limits"]["memory_limit_mib"] == 3072


# -- every process the worker started is gone when it ends; pipes it left open are not waited on (#18, 9) --

def _gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


SPAWN = """
    import os, subprocess, sys, time
    # A daemon in a new session (out of the worker's process group), holding no pipe of ours:
    daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # One that keeps the worker's stdout/stderr open, also in a new session:
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    # A double fork: the grandchild is orphaned at once (re-parented to the worker, a subreaper).
    mid = subprocess.Popen([sys.executable, "-c",
        "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " start_new_session=True, stdout=subprocess.DEVNULL); print(p.pid)"], stdout=subprocess.PIPE, text=True)
    orphan = int(mid.communicate()[0])
    open({pidfile!r}, "w").write(f"{{daemon.pid}} {{holder.pid}} {{orphan}}")
    print("spawned", file=sys.stderr, flush=True)
    time.sleep(0.3)
    {end}
"""


@pytest.mark.parametrize("end", ["sys.exit(0)", "os._exit(0)", "time.sleep(60)"], ids=["exits", "os_exit", "hangs"])
def test_processes_the_worker_started_are_gone_and_not_waited_for(tmp_path, end, start):
    pidfile = tmp_path / "pids"
    ex = _run(tmp_path, start=start, body=SPAWN.format(pidfile=str(pidfile), end=end), timeout_s=3)
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 3
    assert all(_gone(pid) for pid in pids), [(pid, _gone(pid)) for pid in pids]
    assert "spawned" in ex.stderr_tail
    # The worker's own lifetime, not its children's (60 s) nor a wait on the pipe the holder kept open.
    if end == "time.sleep(60)":
        assert ex.timed_out and 3 <= ex.wall_s < 8
    else:
        assert ex.returncode == 0 and not ex.timed_out and ex.wall_s < 8


# -- a runner killed with SIGKILL leaves nothing behind: the launcher's watcher ends it all (#18, item 9) --

RUNNER = """
import os, sys
from profiler.runner import run_limited
from profiler.zygote import Zygote
zygote = Zygote(dict(os.environ)) if sys.argv[2:] == ["zygote"] else None
if zygote is not None:
    assert zygote.ready()
    print(zygote.pid, flush=True)
print("runner", flush=True)
run_limited(sys.argv[1], [], timeout_s=120, memory_limit_mib=4096, rlimit_data=True, zygote=zygote)
"""


def _wait_for(path: Path, seconds: float) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().endswith("\n"):
            return True
        time.sleep(0.02)
    return False


def _all_gone_within(pids: list[int], seconds: float) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(_gone(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("how", ["fresh interpreter", "zygote"])
def test_a_runner_killed_with_sigkill_leaves_no_process_of_the_worker(tmp_path, how):
    """With a zygote, the runner's death ends the zygote (its parent-death signal), whose death ends
    each launcher's watcher, which ends the worker and all it started."""
    import os
    import signal
    import subprocess

    from conftest import ROOT

    pidfile = tmp_path / "pids"
    child = _script(tmp_path, f"""
        import os, subprocess, sys, time
        sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
        daemon = subprocess.Popen(sleep, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        holder = subprocess.Popen(sleep, start_new_session=True)      # keeps the worker's stdout/stderr open
        mid = subprocess.Popen([sys.executable, "-c",
            "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
            " start_new_session=True, stdout=subprocess.DEVNULL); print(p.pid)"], stdout=subprocess.PIPE, text=True)
        orphan = int(mid.communicate()[0])
        open({str(pidfile)!r}, "w").write(f"{{daemon.pid}} {{holder.pid}} {{orphan}} {{os.getpid()}}\\n")
        time.sleep(60)
    """)
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, child, how], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        zygote = [int(runner.stdout.readline())] if how == "zygote" else []
        assert runner.stdout.readline().strip() == "runner"
        assert _wait_for(pidfile, 30), "the worker did not start its processes"
        pids = [int(p) for p in pidfile.read_text().split()] + zygote
        # daemon, holder, orphan, the worker (and the zygote)
        assert len(pids) == 4 + len(zygote) and not any(_gone(p) for p in pids)
        runner.send_signal(signal.SIGKILL)
        runner.wait()
    finally:
        runner.kill()
        runner.wait()
    # The daemon and the holder are in new sessions, the orphan was double-forked: all gone within seconds,
    # long before their 60 s sleep would end them.
    assert _all_gone_within(pids, 5), [(pid, _gone(pid)) for pid in pids]


def test_the_watcher_passes_the_workers_exit_on_and_records_how_processes_end(tmp_path, start):
    ex = _run(tmp_path, start=start, body="import os, time\nos.kill(os.getpid(), 15)\ntime.sleep(5)\n")
    assert ex.returncode == -15 and ex.wall_s < 5
    assert _run(tmp_path, start=start, body="raise SystemExit(7)\n").returncode == 7
    assert ex.limits["processes_ended_by"] == ["process group", "descendants tracked by the runner",
                                               "subreaper watcher (also when the runner is killed)"]


# -- progress travels on its own pipe, never on the worker's stdout (#18, item 10) ------------------------

def test_progress_comes_only_from_the_progress_pipe(tmp_path, start):
    got = []
    ex = run_limited(_script(tmp_path, """
        import json, os, subprocess, sys
        fd = int(os.environ["JPEGAI_PROGRESS_FD"])
        channel = os.fdopen(fd, "w", buffering=1)
        # What a codec prints on stdout is only captured, like its stderr:
        print(json.dumps({"event": "image", "rate": "x"}), flush=True)
        print(json.dumps({"event": "resume", "message": "rate 1 bpp failed"}), flush=True)
        channel.write(json.dumps({"event": "image", "name": "real", "n": 0}) + "\\n")
        # The pipe is not inherited by what the worker executes (the launcher made it non-inheritable):
        r = subprocess.run([sys.executable, "-c", f"import os; os.fstat({fd})"], close_fds=False,
                           capture_output=True, text=True)
        print("child sees the pipe" if r.returncode == 0 else "child has no pipe", file=sys.stderr)
        print("x" * 100000)   # a long stdout line: cut in the tail
    """), [], timeout_s=30, memory_limit_mib=4096, rlimit_data=True, cwd=tmp_path, on_progress=got.append,
        zygote=start)
    assert ex.returncode == 0, ex.stderr_tail
    assert [json.loads(line) for line in got] == [{"event": "image", "name": "real", "n": 0}]
    lines = ex.stderr_tail.splitlines()
    assert lines[:2] == ['{"event": "image", "rate": "x"}', '{"event": "resume", "message": "rate 1 bpp failed"}']
    assert "child has no pipe" in lines
    assert lines[-1] == "x" * 2000 + " […]"


def test_a_forged_event_on_the_progress_pipe_is_taken_field_by_field(tmp_path, tiny_dir, monkeypatch):
    """Even on the progress pipe, only the worker's event kinds pass, with the runner's rate."""
    import profiler.runner as runner
    from profiler.conditions import TestConditions
    from profiler.submission import load_submission

    lines = ['{"event": "image", "rate": "x"}', '{"event": "image", "name": "kodim01", "rate": "x", "n": "?"}',
             '{"event": "resume", "message": "fake"}', '{"event": "rate_done", "status": "failed"}',
             '[1, 2]', 'not json', '{"event": "start", "images": "many"}']

    def fake_run_limited(*args, on_progress, **kwargs):
        for line in lines:
            on_progress(line)
        return runner.WorkerExit(returncode=1, wall_s=0.1, limits={"timeout_s": 1, "memory_limit_mib": 1})

    monkeypatch.setattr(runner, "run_limited", fake_run_limited)
    seen = []
    sub = load_submission(tiny_dir)
    result = runner.run_rate(sub, sub.rates[0].index, TestConditions(), ["cpu"], lambda k, i: seen.append((k, i)))
    assert seen == [("image", {"rate": 0.5, "name": "kodim01", "n": None}), ("start", {"rate": 0.5})]
    assert result.status == "failed" and result.error.stage == "start"


# -- a worker forked from the zygote is what a fresh interpreter would have been (profiler/zygote.py) ----

def test_the_child_gets_its_own_session_environment_directory_and_arguments(tmp_path, start):
    import os

    pid = []
    ex = run_limited(_script(tmp_path, """
        import os, sys
        print("mark", os.environ.get("JPEGAI_TEST_MARK"), file=sys.stderr)
        print("sid", os.getsid(0), "ppid", os.getppid(), file=sys.stderr)
        print("cwd", os.getcwd(), file=sys.stderr)
        print("argv", *sys.argv[1:], file=sys.stderr)
        print("torch", "torch" in sys.modules, file=sys.stderr)
        print("stdin", sys.stdin.read() == "", file=sys.stderr)
    """), ["one", "two"], timeout_s=30, memory_limit_mib=4096, rlimit_data=True, cwd=tmp_path,
        env={**os.environ, "JPEGAI_TEST_MARK": "per-worker"}, on_start=pid.append, zygote=start)
    assert ex.returncode == 0, ex.stderr_tail
    lines = dict(line.split(" ", 1) for line in ex.stderr_tail.splitlines())
    # The environment is the one given for this worker, not the zygote's (which has no such variable).
    assert lines["mark"] == "per-worker"
    # The launcher (the watcher) leads a new session; the worker is its child.
    assert lines["sid"] == f"{pid[0]} ppid {pid[0]}"
    assert lines["cwd"] == str(tmp_path) and lines["argv"] == "one two" and lines["stdin"] == "True"
    # What differs: the zygote has imported torch already.
    assert lines["torch"] == str(start is not None)


def test_a_zygote_that_forked_no_worker_ends_at_once_even_while_importing(tmp_path):
    """The command line starts the zygote before it checks its input; a refused input closes it while it
    still imports torch (seconds), and must not wait for that import to finish."""
    import os
    import time

    z = Zygote(worker_env(TestConditions()))
    pid = z._proc.pid
    time.sleep(0.2)                                  # it has started importing, not finished
    t0 = time.perf_counter()
    z.close()
    assert time.perf_counter() - t0 < 1.0
    with pytest.raises(ProcessLookupError):          # ended and reaped: no process left with its pid
        os.kill(pid, 0)
    assert z.spawn("pass", [], {}, None, 1, {}) is None   # closed: the caller starts fresh interpreters


@pytest.mark.slow
def test_a_profile_from_the_zygote_measures_what_fresh_workers_measure(tmp_path, tiny_dir):
    from profiler import runner
    from profiler.conditions import CountingSpec, ImageSpec, TimingSpec, WorkerSpec
    from profiler.submission import load_submission

    sub = load_submission(tiny_dir)
    reports = {}
    for zygote in (True, False):
        cond = TestConditions(images=ImageSpec(builtin=("chelsea",)), counting=CountingSpec(resolutions=()),
                              timing=TimingSpec(repeats=1, warmup=0, devices=("cpu",)),
                              worker=WorkerSpec(zygote=zygote))
        reports[zygote] = runner.profile(sub, cond, tmp_path / str(zygote), [r.index for r in sub.rates], ["cpu"])
    for z, f in zip(reports[True].rates, reports[False].rates):
        assert z.ok and f.ok, (z.error, f.error)
        assert (z.worker.started_from, f.worker.started_from) == ("zygote", "fresh interpreter")
        assert z.worker.pid != f.worker.pid
        # The tiny codec's hand-counted parameters (tests/test_params.py), and the same bitstreams and counts.
        assert (z.params.encoder, z.params.decoder) == (f.params.encoder, f.params.decoder) == (136, 300)
        assert [(p.bytes, p.bitstream_sha256, p.decoded_sha256) for p in z.images] == \
            [(p.bytes, p.bitstream_sha256, p.decoded_sha256) for p in f.images]
        counted = lambda r: [{part: (c.macs, c.per_module, c.ops) for part, c in p.counts.items()}  # noqa: E731
                             for p in r.images]
        assert counted(z) == counted(f)
        assert z.environment.submission_imported == f.environment.submission_imported
