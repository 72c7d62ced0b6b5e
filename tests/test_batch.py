"""`jpegai-profile batch`: what it plans before anything runs, and bad input as one line (exit 2).

The runs themselves (profiling two submissions into one tree and aggregating it) are in
tests/test_cluster.py (on a Dask LocalCluster) and here once serially.
"""

from __future__ import annotations

import csv
import shutil

import pytest

from profiler.cli import batch

from conftest import CODECS, SMOKE_CONFIG, one_line_error, run_cli


def _plan(*argv):
    return batch.plan(batch.parser().parse_args([str(a) for a in argv]))


def test_a_folder_of_submissions_and_a_submission_are_both_taken(tmp_path):
    folder = tmp_path / "call"
    for name in ("tiny", "sleepy"):
        shutil.copytree(CODECS / name, folder / name)
    (folder / "notes").mkdir()                          # not a submission: left out
    runs = _plan(folder, CODECS / "stamped", "--out", tmp_path / "r", "--quick", "--device", "cpu")
    assert [codec for codec, _, _ in runs] == ["sleepy", "tiny", "stamped"]
    codec, ns, report = runs[2]
    assert report == tmp_path / "r" / "stamped" / "report.json"
    assert ns.out == tmp_path / "r" / "stamped" and ns.quick and ns.device == "cpu" and ns.out_is_default


def test_verify_takes_each_delivery_by_its_codec_slug(tmp_path):
    deliveries = tmp_path / "deliveries"
    (deliveries / "tiny").mkdir(parents=True)
    (deliveries / "tiny.sha256").write_text("")
    [(codec, ns, report)] = _plan(CODECS / "tiny", "--verify", deliveries, "--out", tmp_path / "r", "--repeats", "2")
    assert ns.bitstreams == deliveries / "tiny" and ns.model_sha256 == deliveries / "tiny.sha256"
    assert ns.repeats == 2 and report == tmp_path / "r" / "tiny" / "verify" / "report.json"


@pytest.mark.parametrize("argv, file_part, field, words", [
    (["batch", "{tmp}/nowhere"], "nowhere", None, "no such submission folder"),
    (["batch", "{tmp}"], "{tmp}", None, "no submission.toml in this folder or in its subfolders"),
    (["batch", str(CODECS / "tiny"), "--originals", "builtin"], "command line", "--originals", "with --verify only"),
    (["batch", str(CODECS / "tiny"), "--verify", "{tmp}"], "tiny", "--verify", "no delivery for 'tiny'"),
    (["batch", str(CODECS / "tiny"), "--verify", "{tmp}", "--quick"], "command line", "--quick",
     "does not apply with --verify"),
    (["batch", str(CODECS / "tiny"), "--jobs", "0"], "command line", "--jobs", "at least 1"),
])
def test_bad_input_is_one_line_before_anything_runs(capsys, tmp_path, argv, file_part, field, words):
    if "--quick" in argv:
        (tmp_path / "tiny").mkdir()
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    one_line_error(capsys, argv, str(file_part).replace("{tmp}", str(tmp_path)), field, words)


def test_two_submissions_with_one_report_folder_are_refused(capsys, tmp_path):
    twin = tmp_path / "twin"
    shutil.copytree(CODECS / "tiny", twin)
    one_line_error(capsys, ["batch", str(CODECS / "tiny"), str(twin)], twin / "submission.toml",
                   "submission.codec", "the same report folder tiny/")


@pytest.mark.slow
def test_serial_batch_profiles_both_into_one_tree_and_aggregates(tmp_path):
    cfg = tmp_path / "profile.toml"
    cfg.write_text(SMOKE_CONFIG)
    proc = run_cli("batch", str(CODECS / "tiny"), str(CODECS / "sleepy"), "--config", str(cfg), "--device", "cpu",
                   "--jobs", "1", "--out", str(tmp_path / "reports"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "reports" / "aggregate" / "aggregate.csv").open()))
    assert sorted(r["codec"] for r in rows if r["row"] == "summary") == ["sleepy", "tiny"]
    # sleepy's decode sleeps 200 ms: its row's decode time reads at least that (a real run, not a copy)
    sleepy = next(r for r in rows if r["row"] == "rate" and r["codec"] == "sleepy")
    assert float(sleepy["dec_cpu_s"]) >= 0.2
