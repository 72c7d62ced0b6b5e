"""Nothing measured is lost: the report after each rate point, SIGKILL at any time, --resume.

Fast tests drive `runner.resumable` with hand-built reports; the slow test kills a real profile of the
tiny codec with SIGKILL after its first rate point and resumes it.
"""

import csv
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from profiler.conditions import TestConditions, WorkerSpec
from profiler.model.io import write_report
from profiler.model.report import RateResult, Report
from profiler.runner import resumable

from conftest import CODECS, ROOT, run_cli

ENV = {"cpu_model": "Test CPU", "cpu_count": 2, "python": "3.11.9", "torch": "2.14.1", "cuda_available": False,
       "gpu_name": None}


def _report(sha="abc", cond=None, rates=(), devices=("cpu",), env=ENV, files=None) -> Report:
    cond = cond or TestConditions()
    sub = {"directory": "/x", "codec": "tiny", "proponent": "Test Lab", "version": "", "entry": "codec:build",
           "precision": {"encoder": "float32", "decoder": "float32"}, "files_sha256": sha, "files": files or {},
           "rates": [{"index": 0, "target_bpp": 0.5}, {"index": 1, "target_bpp": 1.0}, {"index": 2, "target_bpp": 2.0}]}
    return Report(submission=sub, conditions=json.loads(json.dumps(cond.to_dict())), environment=dict(env),
                  options={"devices": list(devices)}, rates=list(rates), schema_version="2.0",
                  tool={"version": "0"}, created="2026-01-01T00:00:00+00:00")


def _saved(tmp_path, report: Report) -> Path:
    path = tmp_path / "report.json"
    write_report(report, path)
    return path


OK0 = RateResult(index=0, target_bpp=0.5)
FAILED1 = RateResult(index=1, target_bpp=1.0, status="failed",
                     error={"kind": "timeout", "stage": "image chelsea", "message": "timed out"})


def test_keeps_finished_rate_points_and_reruns_failed(tmp_path):
    path = _saved(tmp_path, _report(rates=[OK0, FAILED1]))
    done, notice = resumable(path, _report(), [0, 1, 2])
    assert list(done) == [0] and done[0].target_bpp == 0.5 and done[0].ok
    assert notice == (f"resuming {path}: 1 rate point(s) done (0.5 bpp), 2 to run "
                      "(failed before, run again: 1 bpp)")


def test_only_selected_rates_are_kept(tmp_path):
    path = _saved(tmp_path, _report(rates=[OK0]))
    done, notice = resumable(path, _report(), [1, 2])
    assert done == {} and notice == f"resuming {path}: 0 rate point(s) done, 2 to run"


def test_changed_files_start_over(tmp_path):
    path = _saved(tmp_path, _report(sha="abc", rates=[OK0]))
    done, notice = resumable(path, _report(sha="def"), [0, 1, 2])
    assert done == {}
    assert notice == f"not resuming: the submission's files changed since {path} was written; starting over"


# -- per-file digests: a file the codec created does not stop the resume; a changed one does (#18, 5) ------

START = {"submission.toml": "a" * 64, "codec.py": "b" * 64, "weights/r1.safetensors": "c" * 64}


def test_a_file_created_since_the_start_does_not_stop_resuming(tmp_path):
    path = _saved(tmp_path, _report(sha="abc", files=START, rates=[OK0]))
    now = {**START, "cache.bin": "d" * 64}
    done, notice = resumable(path, _report(sha="changed", files=now), [0, 1, 2])
    assert list(done) == [0]
    assert notice == (f"resuming {path}: 1 rate point(s) done (0.5 bpp), 2 to run; 1 file(s) not there when it "
                      "began are left out of the comparison (cache.bin)")


@pytest.mark.parametrize("now, named", [
    ({**START, "codec.py": "e" * 64, "cache.bin": "d" * 64}, "codec.py changed"),
    ({k: v for k, v in START.items() if k != "weights/r1.safetensors"}, "weights/r1.safetensors was removed"),
], ids=["changed", "removed"])
def test_a_file_there_at_the_start_that_changed_starts_over_naming_it(tmp_path, now, named):
    path = _saved(tmp_path, _report(files=START, rates=[OK0]))
    done, notice = resumable(path, _report(files=now), [0, 1, 2])
    assert done == {}
    assert notice == (f"not resuming: the submission's file {named} since {path} was written (its files are "
                      "compared as they were when that profile began); starting over")


def test_the_resumed_report_keeps_the_fingerprint_of_the_start(tmp_path):
    from profiler.runner import resume_plan

    path = _saved(tmp_path, _report(sha="abc", files=START, rates=[OK0]))
    fresh = _report(sha="changed", files={**START, "cache.bin": "d" * 64})
    done, _, kept = resume_plan(path, fresh, [0, 1])
    assert list(done) == [0]
    assert kept.submission.files == START and kept.submission.files_sha256 == "abc"
    # Starting over: the fresh fingerprint, cache and all.
    _, _, over = resume_plan(path, _report(files={**START, "codec.py": "e" * 64}), [0, 1])
    assert over.submission.files["codec.py"] == "e" * 64


def test_a_codec_writing_into_its_directory_resumes_in_process(tmp_path, monkeypatch):
    """profile() with the workers faked: each writes into the submission directory as a caching codec
    does; --resume then runs only the missing rate point, and a changed codec.py starts over."""
    import profiler.runner as runner
    from profiler.submission import files_fingerprint, load_submission

    d = tmp_path / "caching"
    shutil.copytree(CODECS / "caching", d)
    sub = load_submission(d)
    ran = []

    def fake_rate(sub, idx, cond, devices, progress, seed=0, job_extra=None, **_):
        ran.append(idx)
        with (sub.directory / "cache.bin").open("a") as fh:
            fh.write(f"rate {idx}\n")
        rate = next(r for r in sub.rates if r.index == idx)
        return RateResult(index=idx, target_bpp=rate.target_bpp)

    monkeypatch.setattr(runner, "run_rate", fake_rate)
    start = files_fingerprint(d)
    notices = []
    progress = lambda kind, info: notices.append(info["message"]) if kind == "resume" else None
    runner.profile(sub, TestConditions(), tmp_path / "out", [0], ["cpu"], progress)
    assert ran == [0] and (d / "cache.bin").is_file()
    rep = runner.profile(sub, TestConditions(), tmp_path / "out", [0, 1], ["cpu"], progress, resume=True)
    assert ran == [0, 1] and rep.run.resumed_rates == [0.5]
    assert notices[-1].endswith("1 to run; 1 file(s) not there when it began are left out of the comparison "
                                "(cache.bin)"), notices
    assert (rep.submission.files_sha256, rep.submission.files) == start
    assert set(start[1]) == {"codec.py", "submission.toml"}
    # A second resume, the cache changed again: still resumes (nothing to run).
    rep = runner.profile(sub, TestConditions(), tmp_path / "out", [0, 1], ["cpu"], progress, resume=True)
    assert ran == [0, 1] and rep.run.resumed_rates == [0.5, 1.0]
    (d / "codec.py").write_text((d / "codec.py").read_text() + "\n# changed\n")
    rep = runner.profile(sub, TestConditions(), tmp_path / "out", [0, 1], ["cpu"], progress, resume=True)
    assert ran == [0, 1, 0, 1] and rep.run.resumed_rates == []
    assert notices[-1].startswith("not resuming: the submission's file codec.py changed since "), notices


def test_changed_conditions_start_over_naming_the_field(tmp_path):
    path = _saved(tmp_path, _report(rates=[OK0]))
    fresh = _report(cond=TestConditions(worker=WorkerSpec(timeout_s=60.0)))
    done, notice = resumable(path, fresh, [0, 1, 2])
    assert done == {}
    assert notice == "not resuming: the test conditions changed (worker.timeout_s: 1800.0 → 60.0); starting over"


def test_conditions_read_from_another_path_are_the_same_conditions(tmp_path):
    path = _saved(tmp_path, _report(cond=TestConditions(source="/a/profile.toml"), rates=[OK0]))
    done, _ = resumable(path, _report(cond=TestConditions(source="/b/profile.toml")), [0])
    assert list(done) == [0]


def test_changed_devices_or_machine_start_over(tmp_path):
    path = _saved(tmp_path, _report(rates=[OK0]))
    assert resumable(path, _report(devices=("cpu", "cuda")), [0])[1] == (
        "not resuming: the devices changed (['cpu'] → ['cpu', 'cuda']); starting over")
    assert resumable(path, _report(env={**ENV, "torch": "2.13.0"}), [0])[1] == (
        "not resuming: the machine or software changed (torch: '2.14.1' → '2.13.0'); starting over")


def test_missing_or_broken_report(tmp_path):
    path = tmp_path / "report.json"
    assert resumable(path, _report(), [0]) == ({}, f"nothing to resume at {path}: starting a new profile")
    path.write_text('{"rates": [')
    done, notice = resumable(path, _report(), [0])
    assert done == {} and notice.startswith(f"not resuming: {path}: not a readable report") and "starting over" in notice


# -- SIGKILL mid-run, then --resume ----------------------------------------------------------------------

MANIFEST = """
[submission]
proponent = "Test Lab"
codec = "tiny"
entry = "codec:build"

[precision]
encoder = "float32"
decoder = "float32"

[[rates]]
target_bpp = 0.5
options = { gain = 4.0 }

[[rates]]
target_bpp = 1.0
options = { gain = 16.0 }

[[rates]]
target_bpp = 2.0
options = { gain = 64.0 }
"""

CONFIG = """
[conditions]
target_rates = [0.5, 1.0, 2.0]
[images]
builtin = ["chelsea", "coffee"]
[counting]
resolutions = []
[timing]
repeats = 1
"""

# Measured figures that differ from run to run by nature; everything else must be identical.
VARYING = {"enc_cpu_s", "dec_cpu_s", "cpu_mem_enc_mib", "cpu_mem_dec_mib"}


def _table(out: Path) -> list[dict]:
    rows = list(csv.DictReader((out / "table.csv").read_text().split("\n\n")[0].splitlines()))
    return [{k: v for k, v in r.items() if k not in VARYING} for r in rows]


def _counts(out: Path) -> list:
    rep = json.loads((out / "report.json").read_text())
    # The counted call's own timing (wall_s, ops_s, outside_ops_share) varies by nature; the counts do not.
    timed = {"wall_s", "ops_s", "outside_ops_share"}
    counts = lambda c: {part: {k: v for k, v in pc.items() if k not in timed} for part, pc in c.items()}
    return [(r["target_bpp"], r["params"], r["weights"], [(i["name"], i["bytes"], counts(i["counts"]))
                                                          for i in r["images"]])
            for r in rep["rates"]]


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_table(tmp_path):
    sub = tmp_path / "tiny3"
    sub.mkdir()
    shutil.copy(CODECS / "tiny" / "codec.py", sub / "codec.py")
    (sub / "submission.toml").write_text(MANIFEST)
    config = tmp_path / "profile.toml"
    config.write_text(CONFIG)
    common = [str(sub), "--config", str(config), "--device", "cpu"]

    whole = tmp_path / "whole"
    proc = run_cli(*common, "--out", str(whole))
    assert proc.returncode == 0, proc.stderr

    part = tmp_path / "part"
    # One rate point at a time, so the kill deterministically leaves the first one: with the default
    # --jobs (2 on a 2-core machine) 0.5 and 1.0 bpp run side by side and either may finish first.
    victim = subprocess.Popen([sys.executable, "-m", "profiler", *common, "--jobs", "1", "--out", str(part)],
                              cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report_path = part / "report.json"
    deadline = time.monotonic() + 300
    seen = None
    while time.monotonic() < deadline and victim.poll() is None:
        if report_path.is_file():
            seen = json.loads(report_path.read_text())   # always whole JSON: written by rename
            if len(seen["rates"]) >= 1:
                break
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    # What the kill left: a valid report of the first rate point, marked as not finished.
    left = json.loads(report_path.read_text())
    assert left["run"]["state"] == "running" and left["run"]["seed"] == 0
    assert [(r["target_bpp"], r["status"]) for r in left["rates"]] == [(0.5, "ok")]
    assert not (part / "table.csv").exists()
    _unfinished_everywhere(tmp_path, report_path, whole / "report.json", config)

    resumed = run_cli(*common, "--out", str(part), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"jpegai-profile: resuming {report_path}: 1 rate point(s) done (0.5 bpp), 2 to run" in resumed.stderr
    final = json.loads(report_path.read_text())
    assert final["run"]["state"] == "complete" and final["run"]["resumed_rates"] == [0.5]
    # The first rate point was kept as measured, not run again.
    assert final["rates"][0]["worker"]["wall_s"] == left["rates"][0]["worker"]["wall_s"]

    # Same table as the uninterrupted run, apart from timings and memory; counts, parameters and
    # bitstream sizes bit-identical.
    assert _table(part) == _table(whole)
    assert [r["target_bpp"] for r in _table(whole)] == ["0.5", "1.0", "2.0"]
    assert _counts(part) == _counts(whole)


def _unfinished_everywhere(tmp_path: Path, killed: Path, finished: Path, config: Path) -> None:
    """The report the kill left, read by every reader (issue 20): each says the run did not finish and
    which planned rate points were never measured (1 and 2 bpp); the verdict is incomplete, never pass."""
    import profiler

    # load_report, as in a notebook
    df = profiler.load_report(killed)
    assert df.attrs["complete"] is False and df.attrs["missing_rates"] == [1.0, 2.0]
    assert list(df["target_bpp"]) == [0.5]
    # check --report: exit 1, the unfinished line, verdict incomplete (the rates rule: not profiled)
    proc = run_cli("check", "--report", str(killed), "--config", str(config))
    assert proc.returncode == 1, proc.stderr
    assert "incomplete report: the run did not finish (run.state running): planned rate points not measured: 1, 2 bpp" \
        in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("verdict: INCOMPLETE")
    proc = run_cli("check", "--report", str(killed), "--config", str(config), "--json")
    data = json.loads(proc.stdout)
    assert data["verdict"] == "incomplete" and data["complete"] is False and data["missing_rates"] == [1.0, 2.0]
    # aggregate: flagged with a warning naming the missing rate points; --complete-only leaves it out
    both = tmp_path / "both"
    (both / "killed").mkdir(parents=True)
    (both / "whole").mkdir()
    shutil.copy(killed, both / "killed" / "report.json")
    shutil.copy(finished, both / "whole" / "report.json")
    df = profiler.aggregate([both])
    warnings = df.attrs["warnings"]
    assert any("1, 2" in w or "1.0, 2.0" in w for p, w in warnings.items() if "killed" in p), warnings
    proc = run_cli("aggregate", str(both), "--out", str(tmp_path / "agg"))
    assert proc.returncode == 0, proc.stderr
    assert "unfinished" in (tmp_path / "agg" / "aggregate.html").read_text()
    only = profiler.aggregate([both], complete_only=True)
    assert set(only["report"].map(lambda p: Path(p).parent.name)) == {"whole"}
    assert [Path(p).parent.name for p in only.attrs["left_out"]] == ["killed"]


@pytest.mark.slow
def test_a_caching_codec_resumes_end_to_end(tmp_path):
    """tests/codecs/caching writes cache.bin into its own directory while it is profiled: a partial
    profile is resumed (only the missing rate point measured); after its entry .py changed, --resume
    starts over and names the file."""
    sub = tmp_path / "caching"
    shutil.copytree(CODECS / "caching", sub)
    shutil.copytree(CODECS / "tiny", tmp_path / "tiny")       # the fixture builds on ../tiny
    config = tmp_path / "profile.toml"
    config.write_text("[images]\nbuiltin = [\"chelsea\"]\n[counting]\nresolutions = []\n[timing]\nwarmup = 1\nrepeats = 1\n")
    out = tmp_path / "out"
    common = [str(sub), "--config", str(config), "--device", "cpu", "--out", str(out)]
    first = run_cli(*common, "--rates", "0.5")
    assert first.returncode == 0, first.stderr
    assert (sub / "cache.bin").read_text().startswith("build 0.5 pid ")
    before = json.loads((out / "report.json").read_text())
    assert set(before["submission"]["files"]) == {"codec.py", "submission.toml"}

    resumed = run_cli(*common, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    notice = [l for l in resumed.stderr.splitlines() if l.startswith("jpegai-profile: ")]
    assert notice == [f"jpegai-profile: resuming {out / 'report.json'}: 1 rate point(s) done (0.5 bpp), 1 to run; "
                      "1 file(s) not there when it began are left out of the comparison (cache.bin)"], resumed.stderr
    after = json.loads((out / "report.json").read_text())
    assert after["run"]["resumed_rates"] == [0.5] and [r["status"] for r in after["rates"]] == ["ok", "ok"]
    assert after["rates"][0]["worker"] == before["rates"][0]["worker"]     # kept, not measured again
    assert [l.split()[:2] for l in (sub / "cache.bin").read_text().splitlines() if l.startswith("build")] == [
        ["build", "0.5"], ["build", "1.0"]]                                # only 1 bpp was built again
    assert after["submission"]["files"] == before["submission"]["files"]

    (sub / "codec.py").write_text((sub / "codec.py").read_text() + "\n# a change\n")
    again = run_cli(*common, "--resume", "--rates", "0.5")
    assert again.returncode == 0, again.stderr
    assert [l for l in again.stderr.splitlines() if l.startswith("jpegai-profile: ")] == [
        f"jpegai-profile: not resuming: the submission's file codec.py changed since {out / 'report.json'} was "
        "written (its files are compared as they were when that profile began); starting over"]
    final = json.loads((out / "report.json").read_text())
    assert final["run"]["resumed_rates"] == [] and final["submission"]["files"]["codec.py"] != before["submission"]["files"]["codec.py"]
    assert "cache.bin" in final["submission"]["files"]      # there when this profile began
