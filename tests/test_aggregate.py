"""Aggregating reports across proponents: values, refusal of another schema, flagging other conditions."""

import csv
import io
import json
import math
from pathlib import Path

import pytest

import profiler
from profiler.aggregation import aggregate, to_csv
from profiler.errors import InputError

from conftest import run_cli

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _place(root: Path, name: str, data: dict) -> Path:
    path = root / name / "report.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def three(tmp_path):
    """fixnet and betanet under the default conditions, and gamma: fixnet's figures with 5 repeats and
    another image set."""
    fixnet = json.loads((FIXTURES / "report_fixnet.json").read_text())
    betanet = json.loads((FIXTURES / "report_betanet.json").read_text())
    gamma = json.loads((FIXTURES / "report_fixnet.json").read_text())
    gamma["submission"]["proponent"], gamma["submission"]["codec"] = "Gamma", "gammanet"
    gamma["conditions"]["timing"]["repeats"] = 5
    gamma["conditions"]["images"]["builtin"] = ["chelsea"]
    gamma["conditions"]["source"] = "/elsewhere/profile.toml"      # where they were read from: not compared
    root = tmp_path / "reports"
    for name, data in (("fixnet", fixnet), ("betanet", betanet), ("gamma", gamma)):
        _place(root, name, data)
    return root


def test_load_report_is_the_standard_table(tmp_path):
    df = profiler.load_report(FIXTURES / "report_fixnet.json")
    assert list(df["target_bpp"]) == [0.25, 0.5, 1.0]
    assert list(df["kmac_px_decoder"][:2]) == [100.0, 150.0] and math.isnan(df["kmac_px_decoder"][2])
    assert df.attrs["verdict"] == "fail" and df.attrs["summary"]["params_total"] == 3500


def test_aggregate_rows_and_summaries(three):
    df = profiler.aggregate([three])
    summ = df[df["row"] == "summary"].set_index("codec")
    assert list(summ.index) == ["betanet", "fixnet", "gammanet"]          # sorted by path
    fix = summ.loc["fixnet"]
    assert (fix["params_largest_model"], fix["params_total"]) == (2500, 3500)
    assert (fix["kmac_px_decoder_worst"], fix["kmac_px_encoder_max"]) == (150.0, 60.0)
    # Medians over the two rate points that completed: (0.25 + 0.3) / 2 and (0.01 + 0.015) / 2.
    assert fix["median_dec_cpu_s"] == pytest.approx(0.275) and fix["median_dec_gpu_s"] == pytest.approx(0.0125)
    assert fix["gpu_mem_peak_mib"] == 80.0 and fix["verdict"] == "fail"
    beta = summ.loc["betanet"]
    assert (beta["params_largest_model"], beta["kmac_px_decoder_worst"]) == (800, 50.0)
    assert math.isnan(beta["median_dec_gpu_s"]) and math.isnan(beta["gpu_mem_peak_mib"])
    assert beta["precision"] == "enc float16 / dec int8" and beta["verdict"] == "pass"
    rates = df[df["row"] == "rate"]
    assert len(rates) == 3 + 2 + 3
    beta_rates = rates[rates["codec"] == "betanet"]
    assert list(beta_rates["kmac_px_decoder"]) == [40.0, 50.0] and list(beta_rates["target_bpp"]) == [0.25, 0.5]


def test_different_conditions_are_flagged_by_name(three):
    df = aggregate([three])
    warn = dict(zip(df[df["row"] == "summary"]["codec"], df[df["row"] == "summary"]["warning"]))
    assert warn["fixnet"] == "" and warn["betanet"] == ""
    assert warn["gammanet"] == ('conditions differ: images.builtin=["chelsea"] (others ["astronaut", "coffee", '
                                '"chelsea", "rocket"]); timing.repeats=5 (others 3)')
    assert all(df[df["codec"] == "gammanet"]["warning"] == warn["gammanet"])   # on every row of it
    text = to_csv(df)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert all("timing.repeats=5" in r["warning"] for r in rows if r["codec"] == "gammanet")
    assert next(r for r in rows if r["codec"] == "betanet" and r["row"] == "rate")["enc_gpu_s"] == "not measured"


def test_another_schema_version_is_refused(three):
    other = json.loads((FIXTURES / "report_betanet.json").read_text())
    other["schema_version"] = "2.0"
    bad = _place(three, "future", other)
    with pytest.raises(InputError) as exc:
        aggregate([three])
    assert exc.value.file == str(bad) and exc.value.field == "schema_version"


def test_another_minor_version_is_flagged(three):
    data = json.loads((three / "betanet" / "report.json").read_text())
    data["schema_version"] = "1.1"
    (three / "betanet" / "report.json").write_text(json.dumps(data))
    df = aggregate([three])
    w = df[(df["row"] == "summary") & (df["codec"] == "betanet")]["warning"].item()
    assert w == "schema 1.1 (others 1.0)"


def test_cli_aggregate_writes_csv_markdown_html(three, tmp_path):
    out = tmp_path / "agg"
    proc = run_cli("aggregate", str(three), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO((out / "aggregate.csv").read_text())))
    fix = next(r for r in rows if r["codec"] == "fixnet" and r["row"] == "summary")
    assert fix["params_total"] == "3500" and fix["kmac_px_decoder_worst"] == "150.0" and fix["verdict"] == "fail"
    md = (out / "aggregate.md").read_text()
    assert "| Beta Corp | betanet | 800 | 800 | 50.00 | 30.00 |" in md
    assert "> **Warning**" in md and "timing.repeats=5 (others 3)" in md
    page = (out / "aggregate.html").read_text()
    assert page.count('<img class="plot"') == 3 and "https://" not in page
    assert "class=warn" in page and "gammanet" in page
    assert "timing.repeats=5" in proc.stdout


def test_cli_aggregate_refuses_other_schema_with_one_line(three):
    other = json.loads((FIXTURES / "report_betanet.json").read_text())
    other["schema_version"] = "2.0"
    _place(three, "future", other)
    proc = run_cli("aggregate", str(three), "--out", str(three.parent / "agg"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "future/report.json: schema_version: report schema '2.0'" in lines[0]


def test_cli_aggregate_missing_folder(tmp_path):
    proc = run_cli("aggregate", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "nope: no such report folder" in proc.stderr
