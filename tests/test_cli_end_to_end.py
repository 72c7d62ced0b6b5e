"""The main job end to end, as a user runs it."""

import csv
import json
from pathlib import Path

import pytest

from profiler.render.table import COLUMNS

from conftest import ROOT, run_cli

REQUIRED = ["proponent", "codec", "target_bpp", "bpp", "params_encoder", "params_decoder", "kmac_px_encoder",
            "kmac_px_decoder", "enc_cpu_s", "dec_cpu_s", "enc_gpu_s", "dec_gpu_s", "gpu_mem_enc_mib",
            "gpu_mem_dec_mib", "precision_encoder", "precision_decoder"]
SUMMARY = ["params_largest_model", "params_total", "kmac_px_decoder_worst", "kmac_px_encoder_max"]


def _read_table(path: Path):
    text = path.read_text().split("\n\n")
    rows = list(csv.DictReader(text[0].splitlines()))
    summary = dict(list(csv.reader(text[1].strip().splitlines()))[1:])
    return rows, summary


def test_tiny_codec_all_rates(tmp_path, tiny_dir):
    proc = run_cli(str(tiny_dir), "--out", str(tmp_path), "--repeats", "2", "--images", "builtin", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    rows, summary = _read_table(tmp_path / "table.csv")
    assert [float(r["target_bpp"]) for r in rows] == [0.5, 1.0]
    assert set(REQUIRED) <= set(rows[0]) and set(SUMMARY) <= set(summary)
    assert int(summary["params_largest_model"]) == 412 and int(summary["params_total"]) == 416
    for r in rows:
        assert int(r["params_encoder"]) == 136 and int(r["params_decoder"]) == 300
        # GPU columns say why they are empty (the reason of the rate point), never 0.
        assert r["enc_gpu_s"] == r["gpu_mem_dec_mib"] == "not measured (not requested: --device cpu)"
        assert float(r["dec_cpu_s"]) > 0 and float(r["bpp"]) > 0
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["schema_version"] == "2.0"
    assert rep["rates"][0]["not_measured"]["gpu"] == {"code": "not-requested", "reason": "not requested: --device cpu"}
    # Four built-in photographs, 2 timed repeats each.
    assert [i["name"] for i in rep["rates"][0]["images"]] == ["astronaut", "coffee", "chelsea", "rocket"]
    assert rep["rates"][0]["images"][0]["timing"]["cpu"]["decode"]["n"] == 2
    assert (tmp_path / "table.md").read_text().count("| 0.50 |") == 1


@pytest.mark.slow
def test_bundled_submission_quick(tmp_path):
    proc = run_cli(str(ROOT / "submissions" / "bmshj2018-hyperprior"), "--quick", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    rows, summary = _read_table(tmp_path / "table.csv")
    assert len(rows) == 1 and set(COLUMNS) <= set(rows[0])
    r = rows[0]
    # Quality 1 of bmshj2018-hyperprior: N=128, M=192. g_a and g_s each hold 4 convs/deconvs of k5.
    assert int(r["params_encoder"]) > 2_000_000 and int(r["params_decoder"]) > 2_000_000
    # Hyperprior decoders run at roughly 40–120 kMAC/px (complexity-facts.md §3: 87 for g_a+g_s+h).
    assert 30 < float(r["kmac_px_decoder"]) < 120
    assert 0 < float(r["bpp"]) < 24
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["rates"][0]["weights"]["source"].startswith("random initialisation")
    assert rep["rates"][0]["images"][0]["counts"]["decoder"]["complete"] is True
