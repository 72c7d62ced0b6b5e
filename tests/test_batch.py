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


@pytest.mark.slow
def test_batch_verify_checks_each_delivery_and_aggregates(tmp_path):
    """The tiny codec's own delivery (`--write-bitstreams`), verified through batch's layout."""
    cfg = tmp_path / "profile.toml"
    cfg.write_text(SMOKE_CONFIG)
    made = run_cli(str(CODECS / "tiny"), "--config", str(cfg), "--device", "cpu", "--out", str(tmp_path / "made"),
                   "--write-bitstreams", str(tmp_path / "deliveries" / "tiny"))
    assert made.returncode == 0, made.stderr[-3000:]
    proc = run_cli("batch", str(CODECS / "tiny"), "--verify", str(tmp_path / "deliveries"), "--originals", "builtin",
                   "--config", str(cfg), "--device", "cpu", "--out", str(tmp_path / "reports"))
    # exit 1: the tiny codec has 2 of the 9 mandatory rates (rates.mandatory, bitstreams.complete fail)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    from profiler.model.io import read_report

    report = read_report(tmp_path / "reports" / "tiny" / "verify" / "report.json")
    items = [i for r in report.rates for i in r.verification]
    assert len(items) == 2 and report.verification is not None      # chelsea at both rate points
    failed = [r.id for r in report.compliance.rules if r.status == "fail" and r.level == "mandatory"]
    assert sorted(failed) == ["bitstreams.complete", "rates.mandatory"]
    assert next(r for r in report.compliance.rules if r.id == "decoded.match").status == "pass"
    rows = list(csv.DictReader((tmp_path / "reports" / "aggregate" / "aggregate.csv").open()))
    assert [r["codec"] for r in rows if r["row"] == "summary"] == ["tiny"]
