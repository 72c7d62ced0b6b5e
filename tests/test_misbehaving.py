"""What a misbehaving codec gets (issue #18, items 4, 6, 7, 9, 10).

Fast tests check the decoded-picture check of the worker and of the interoperability comparison, and
that every reader of a report (aggregate, check --report, --resume) turns a malformed one into one line.
The slow tests profile fixture codecs end to end: bad_output/ (broken reconstructions and a message full
of markup, one per rate point) and unruly/ (prints forged progress events, starts processes that outlive
it and keep its pipes open).
"""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path

import psutil
import pytest
import torch

from conftest import SMOKE_CONFIG, CODECS, ROOT, run_cli

from profiler.errors import SubmissionError
from profiler.interop import compare_image, reconstruction_problem
from profiler.worker import _check_decoded, _exception_text

X = torch.rand(1, 3, 8, 6)


class _Img:
    name, width, height = "p", 6, 8


# -- the decoded picture (item 4) -------------------------------------------------------------------------

def _nan_picture():
    y = X.clone()
    y[0, 0, 1, 1] = float("nan")
    y[0, 2, 3, 4] = float("inf")
    return y


@pytest.mark.parametrize("make, message", [
    (lambda: (X * 255).round().to(torch.uint8), "decode() must return floats in [0, 1], got uint8"),
    (lambda: torch.zeros(1, 3, 8, 6, dtype=torch.int64), "decode() must return floats in [0, 1], got int64"),
    (lambda: torch.empty(1, 3, 8, 6, device="meta"),
     "decode() returned a tensor on the meta device (no data): it must return the decoded picture"),
    (_nan_picture, "decode() returned 2 non-finite value(s) (NaN or inf) among 144: the reconstruction is broken"),
    (lambda: X[..., :4], "decode() must return a tensor of shape (1, 3, 8, 6), got (1, 3, 8, 4)"),
    (lambda: X.numpy(), "decode() must return a tensor of shape (1, 3, 8, 6), got ndarray"),
    (lambda: None, "decode() must return a tensor of shape (1, 3, 8, 6), got NoneType"),
], ids=["uint8", "int64", "meta", "nan", "shape", "numpy", "none"])
def test_a_broken_reconstruction_is_the_submissions_decode_error(make, message):
    with pytest.raises(SubmissionError) as info:
        _check_decoded(make(), X)
    assert info.value.stage == "decode" and str(info.value) == f"decode: {message}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_float_pictures_of_any_precision_pass(dtype):
    y = X.to(dtype)
    assert _check_decoded(y, X) is y
    assert reconstruction_problem(y, tuple(X.shape), "cpu") is None


def test_a_picture_on_another_device_is_refused():
    assert reconstruction_problem(X, tuple(X.shape), "cuda") == "decode() returned a tensor on cpu, expected cuda"


def test_interop_b_decode_that_is_broken_is_bs_error_not_a_match():
    """NaN on device B once compared as "largest |A−B| nan" and passed; now it is B's decode error."""
    bits = b"\x00" * 10
    good = compare_image(_Img, X, bits, X.clone(), lambda b: X.clone(), "cpu")
    assert good["max_abs_diff"] == 0.0 and "decode_error_b" not in good
    for out, words in ((_nan_picture(), "2 non-finite value(s)"), ((X * 255).to(torch.uint8), "got uint8"),
                       (torch.empty(1, 3, 8, 6, device="meta"), "meta device"), (X[:, :1], "of shape")):
        entry = compare_image(_Img, X, bits, X.clone(), lambda b, out=out: out, "cpu")
        assert entry["decode_error_b"].startswith("BrokenReconstruction: decode() ") and words in entry["decode_error_b"]
        assert "b" not in entry and "max_abs_diff" not in entry
    # A broken A picture is A's error, not compared.
    entry = compare_image(_Img, X, bits, _nan_picture(), lambda b: X.clone(), "cpu")
    assert "non-finite" in entry["error_a"] and "a" not in entry


def test_exception_text_is_as_written_and_never_raises():
    class Odd(Exception):
        def __str__(self):
            raise RuntimeError("no")

    assert _exception_text(RuntimeError("[/red] at [/data/w.pt]")) == "RuntimeError: [/red] at [/data/w.pt]"
    assert _exception_text(KeyError()) == "KeyError"
    assert _exception_text(Odd()) == "Odd: <str() of the exception raised RuntimeError>"


# -- every reader of a report turns a malformed one into one line (item 7) ------------------------------

BASE = json.loads((ROOT / "tests" / "fixtures" / "report_acme.json").read_text())


def _variant(name):
    d = copy.deepcopy(BASE)
    if name == "list":
        return json.dumps([d]).encode()
    if name == "not-utf8":
        return b'{"schema_version": "2.0", "x": "\xff\xfe"}'
    if name == "no-submission":
        del d["submission"]
    elif name == "counts-empty":
        d["rates"][0]["images"][0]["counts"] = {}
    elif name == "precision-null":
        d["submission"]["precision"] = None
    elif name == "conditions-list":
        d["conditions"] = []
    return json.dumps(d).encode()


MALFORMED = {"list": "not a report (a JSON list, expected an object)",
             "not-utf8": "not a readable report (UnicodeDecodeError",
             "no-submission": "submission: Field required",
             "counts-empty": "rates[0].images[0].counts: ",
             "precision-null": "submission.precision: ",
             "conditions-list": "conditions: "}


def _one_line(capsys, argv):
    from profiler.cli import main

    code = main(argv)
    out, err = capsys.readouterr()
    capsys.last_out_err = out + err
    lines = [l for l in err.splitlines() if l.strip()]
    assert "Traceback" not in out + err
    return code, lines


@pytest.mark.parametrize("name", list(MALFORMED))
def test_aggregate_and_check_on_a_malformed_report_exit_2_with_one_line(tmp_path, capsys, name):
    path = tmp_path / "r" / "report.json"
    path.parent.mkdir()
    path.write_bytes(_variant(name))
    for argv in (["aggregate", str(path.parent), "--out", str(tmp_path / "agg")], ["check", "--report", str(path)]):
        code, lines = _one_line(capsys, argv)
        assert code == 2 and len(lines) == 1, (argv, lines)
        assert lines[0].startswith(f"jpegai-profile: error: {path}: ") and MALFORMED[name] in lines[0], lines
    assert path.read_bytes() == _variant(name)


@pytest.mark.parametrize("name", list(MALFORMED))
def test_resume_on_a_malformed_report_says_not_resuming(tmp_path, name):
    from profiler.runner import new_report, resumable
    from profiler.conditions import TestConditions
    from profiler.submission import load_submission

    path = tmp_path / "report.json"
    path.write_bytes(_variant(name))
    fresh = new_report(load_submission(CODECS / "tiny"), TestConditions(), {"devices": ["cpu"]})
    done, notice = resumable(path, fresh, [0, 1])
    assert done == {}
    assert notice.startswith(f"not resuming: {path}: ") and MALFORMED[name] in notice
    assert notice.endswith("; starting over") and "\n" not in notice


def test_profile_resume_on_a_malformed_report_prints_the_notice_not_a_traceback(tmp_path, capsys, monkeypatch):
    """The CLI path of --resume (workers faked: each rate point fails at once)."""
    import profiler.runner as runner

    monkeypatch.setattr(runner, "run_limited", lambda *a, **k: runner.WorkerExit(
        returncode=3, wall_s=0.01, limits={"timeout_s": 1, "memory_limit_mib": 1, "memory_enforced_by": ["RSS watchdog"]}))
    out = tmp_path / "out"
    out.mkdir()
    bad = json.loads(_variant("conditions-list"))
    bad["submission"]["codec"] = "tiny"    # its own report (another codec's is refused before: test_bad_input_upfront)
    (out / "report.json").write_text(json.dumps(bad))
    code, lines = _one_line(capsys, [str(CODECS / "tiny"), "--out", str(out), "--resume", "--device", "cpu"])
    assert code == 1
    # The notice (through the progress display while it runs), then one line per failed rate point.
    notice = (f"jpegai-profile: not resuming: {out / 'report.json'}: conditions: Input should be a valid "
              "dictionary or instance of Conditions; starting over")
    assert notice in capsys.last_out_err
    assert [l for l in lines if notice not in l and not l.startswith("jpegai-profile: rate ")] == []
    assert sum(l.startswith("jpegai-profile: rate ") for l in lines) == 2
    assert json.loads((out / "report.json").read_text())["submission"]["codec"] == "tiny"   # started over


# -- end to end ---------------------------------------------------------------------------------------------

CONFIG = SMOKE_CONFIG


def _profile(tmp_path, fixture, *extra):
    config = tmp_path / "profile.toml"
    config.write_text(CONFIG)
    out = tmp_path / "out"
    t0 = time.perf_counter()
    proc = run_cli(str(CODECS / fixture), "--config", str(config), "--out", str(out), "--device", "cpu", *extra)
    return proc, json.loads((out / "report.json").read_text()), time.perf_counter() - t0


@pytest.mark.slow
def test_broken_reconstructions_and_markup_fail_their_rate_points_only(tmp_path):
    # uint8 (2 bpp) and meta (3 bpp) are the same check (the unit tests above): left out to save two workers.
    proc, report, _ = _profile(tmp_path, "bad_output", "--rates", "0.5,1,4")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and "MarkupError" not in proc.stdout + proc.stderr
    rates = {r["target_bpp"]: r for r in report["rates"]}
    good = rates[0.5]
    assert good["status"] == "ok" and [i["name"] for i in good["images"]] == ["chelsea"]
    assert good["params"]["decoder"] == 300 and good["images"][0]["psnr_rgb"] > 0
    expected = {1.0: "decode: decode() returned 1 non-finite value(s) (NaN or inf) among ",
                4.0: "decode: RuntimeError: weights [/data/w.pt] not found on [cuda:0] [/red] [bold]"}
    assert sorted(rates) == [0.5, 1.0, 4.0]
    for bpp, message in expected.items():
        err = rates[bpp]["error"]
        assert rates[bpp]["status"] == "failed" and err["kind"] == "submission", (bpp, err)
        assert err["stage"] == "decode" and err["message"].startswith(message), (bpp, err)
        assert rates[bpp]["images"] == []    # no picture scored from a broken reconstruction
    # One line per failed rate point, the text as written; the tables were printed.
    lines = [l for l in proc.stderr.splitlines() if l.startswith("jpegai-profile: rate")]
    assert len(lines) == 2 and lines[0].startswith("jpegai-profile: rate 1 bpp failed (submission): decode: decode() "
                                                   "returned 1 non-finite value(s)"), lines
    assert lines[1].startswith("jpegai-profile: rate 4 bpp failed (submission): decode: RuntimeError: weights "
                               "[/data/w.pt] not found on [cuda:0] [/red] [bold] — details in "), lines
    assert "bad_output" in proc.stdout and "wrote " in proc.stdout
    assert "[/data/w.pt]" in proc.stdout and "[cuda:0]" in proc.stdout   # the console's failure note, as written


@pytest.mark.slow
def test_a_codec_that_prints_events_and_leaves_processes_behind(tmp_path, monkeypatch):
    pidfile = tmp_path / "unruly.pids"
    monkeypatch.setenv("UNRULY_PIDFILE", str(pidfile))
    proc, report, wall = _profile(tmp_path, "unruly", "--timeout", "120")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    # Its forged events moved nothing: no fake failure, no resume notice, every rate point measured.
    assert [l for l in proc.stderr.splitlines() if l.startswith("jpegai-profile:")] == []
    (rate,) = report["rates"]
    assert rate["status"] == "ok" and [i["name"] for i in rate["images"]] == ["chelsea"]
    # What it started is gone: killed, not expired (they sleep 60 s from the pid file's writing), and
    # the profile ended well before they would have: it did not wait on the pipe the holder kept open.
    since_started = time.time() - pidfile.stat().st_mtime
    assert since_started < 50, since_started
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 2
    for pid in pids:
        try:
            assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
        except psutil.NoSuchProcess:
            pass
    # Nothing else on stderr (the worker record is validated, not copied in: no serializer warning).
    assert "PydanticSerializationUnexpectedValue" not in proc.stderr


@pytest.mark.slow
def test_a_profile_killed_with_sigkill_leaves_none_of_the_codecs_processes(tmp_path):
    """The runner itself SIGKILLed while unruly/ runs: the processes it started in new sessions go too
    (the launcher's watcher, runner.PROCESSES_ENDED_BY), within seconds, not when their 60 s sleep ends."""
    import os
    import signal
    import subprocess
    import sys

    pidfile = tmp_path / "unruly.pids"
    config = tmp_path / "profile.toml"
    config.write_text(CONFIG)
    victim = subprocess.Popen([sys.executable, "-m", "profiler", str(CODECS / "unruly"), "--config", str(config),
                               "--out", str(tmp_path / "out"), "--device", "cpu"], cwd=ROOT,
                              env={**os.environ, "UNRULY_PIDFILE": str(pidfile)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and victim.poll() is None and not (
                pidfile.is_file() and pidfile.read_text().endswith("\n")):
            time.sleep(0.05)
        pids = [int(p) for p in pidfile.read_text().split()]
        assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    finally:
        victim.kill()
        victim.wait()
    def running(pid):
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 5
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if running(p)]
        time.sleep(0.05)
    assert alive == [], alive
