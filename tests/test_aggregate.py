"""Aggregating reports across proponents: values, refusal of another schema, flagging other conditions,
unfinished runs (issue 20), free-text names (issue 11) and malformed reports (one line, issue 18).

The 1.0 fixtures are read through the upgrader; report_acme.json (2.0) is an unfinished run (1.0 bpp
planned, not measured) whose names are markup / a spreadsheet formula (tests/fixtures/make_reports.py).
"""

import ast
import csv
import io
import json
import math
from pathlib import Path

import pytest

import profiler
from profiler.aggregation import aggregate, load_report, to_csv, to_html, to_markdown
from profiler.cli import aggregate as agg_cli
from profiler.errors import InputError
from profiler.model.io import read_report, write_report

from conftest import run_cli

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ACME_PROPONENT = "=cmd|' /C calc'!A0"


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


def test_workers_from_the_zygote_and_fresh_interpreters_are_not_mixed_silently(tmp_path):
    """Their absolute CPU peaks differ (a forked worker's resident set lacks the library pages it never
    touches again; RefNet: ~285 MiB lower), so reports made both ways are flagged like other conditions.
    The fixture reports predate the setting: they read as fresh interpreters (zygote false)."""
    fresh = json.loads((FIXTURES / "report_fixnet.json").read_text())
    assert "zygote" not in fresh["conditions"]["worker"]
    forked = json.loads(json.dumps(fresh))
    forked["submission"]["codec"] = "forked"
    forked["conditions"]["worker"]["zygote"] = True
    third = json.loads(json.dumps(forked))
    third["submission"]["codec"] = "forked2"
    root = tmp_path / "reports"
    for name, data in (("fresh", fresh), ("forked", forked), ("forked2", third)):
        _place(root, name, data)
    df = aggregate([root])
    warn = dict(zip(df[df["row"] == "summary"]["codec"], df[df["row"] == "summary"]["warning"]))
    assert warn["forked"] == warn["forked2"] == ""
    assert warn[fresh["submission"]["codec"]] == "conditions differ: worker.zygote=false (others true)"


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
    other["schema_version"] = "3.0"
    bad = _place(three, "future", other)
    with pytest.raises(InputError) as exc:
        aggregate([three])
    assert exc.value.file == str(bad) and exc.value.field == "schema_version"


def test_another_minor_version_is_flagged(three):
    # 1.x reports are upgraded to 2.0; a 2.1 report among 2.0 ones is kept and flagged.
    path = three / "betanet" / "report.json"
    data = json.loads(profiler.model.io.to_json(read_report(path)))
    data["schema_version"] = "2.1"
    path.write_text(json.dumps(data))
    df = aggregate([three])
    w = df[(df["row"] == "summary") & (df["codec"] == "betanet")]["warning"].item()
    assert w == "schema 2.1 (others 2.0)"


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
    other["schema_version"] = "3.0"
    _place(three, "future", other)
    proc = run_cli("aggregate", str(three), "--out", str(three.parent / "agg"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "future/report.json: schema_version: report schema '3.0'" in lines[0]


def test_cli_aggregate_missing_folder(tmp_path):
    proc = run_cli("aggregate", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "nope: no such report folder" in proc.stderr


def test_the_library_does_not_import_the_cli():
    """Imports point one way: cli → aggregation/render → derive → model (every import, in functions too)."""
    root = Path(profiler.__file__).parent
    for path in [root / "aggregation.py", *sorted((root / "render").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                name = ("." * node.level) + (node.module or "")
                names = [name] + [f"{name}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for n in names:
                assert not any(bad in n for bad in ("cli", "runner", "worker")), f"{path.name} imports {n}"


def test_cli_module_contract():
    assert agg_cli.NAME == "aggregate" and agg_cli.ALIASES == ()
    args = agg_cli.parser().parse_args(["a", "b", "--complete-only", "--out", "x"])
    assert [str(d) for d in args.dirs] == ["a", "b"] and args.complete_only and str(args.out) == "x"
    with pytest.raises(InputError):
        agg_cli.parser().parse_args([])                  # one line, not argparse's usage and exit


# -- an unfinished run (issue 20) -----------------------------------------------------------------------

@pytest.fixture
def with_unfinished(three):
    _place(three, "acme", json.loads((FIXTURES / "report_acme.json").read_text()))
    return three


def test_load_report_says_the_run_did_not_finish():
    df = load_report(FIXTURES / "report_acme.json")
    assert df.attrs["complete"] is False and df.attrs["missing_rates"] == [1.0]
    assert df.attrs["planned_rates"] == [0.25, 0.5, 1.0]
    assert "summary figures cover only the rate points measured" in df.attrs["unfinished"]
    done = profiler.load_report(FIXTURES / "report_fixnet.json")
    assert done.attrs["complete"] is True and done.attrs["missing_rates"] == [] and done.attrs["unfinished"] is None


def test_aggregate_flags_an_unfinished_run(with_unfinished):
    df = aggregate([with_unfinished])
    acme = df[df["proponent"] == ACME_PROPONENT]
    assert len(acme) == 3 and set(acme["row"]) == {"rate", "summary"}          # 2 rate points + summary
    assert all(acme["complete"] == False) and all(acme["missing_rates"] == "1")   # noqa: E712
    assert all(acme["warning"] == "run not finished (state running): rate points 1 bpp not measured; "
                                  "summary over the rate points measured only")
    others = df[df["proponent"] != ACME_PROPONENT]
    assert all(others["complete"] == True) and not any(others["warning"].str.contains("not finished"))  # noqa: E712
    md = to_markdown(df)
    assert "rate points 1 bpp not measured" in md and "Acme \\[v2\\] (main) (unfinished)" in md
    page = to_html(df)
    assert page.count("⚠ unfinished</span>") == 3 and page.count("<tr class='flagged incomplete'>") == 3
    rows = list(csv.DictReader(io.StringIO(to_csv(df))))
    acme_rows = [r for r in rows if r["codec"] == "Acme [v2] (main)"]
    assert {r["complete"] for r in acme_rows} == {"False"} and {r["missing_rates"] for r in acme_rows} == {"1"}


def test_complete_only_leaves_unfinished_reports_out(with_unfinished):
    df = aggregate([with_unfinished], complete_only=True)
    assert ACME_PROPONENT not in set(df["proponent"]) and set(df["codec"]) == {"fixnet", "betanet", "gammanet"}
    assert [Path(p).parent.name for p in df.attrs["left_out"]] == ["acme"]
    assert "Left out" in to_markdown(df) and "Left out" in to_html(df)
    with pytest.raises(InputError) as exc:               # nothing left: one line, not an empty table
        aggregate([FIXTURES / "report_acme.json"], complete_only=True)
    assert exc.value.field == "--complete-only"


def test_cli_complete_only_and_unfinished_warning(with_unfinished, tmp_path, capsys):
    out = tmp_path / "agg"
    assert agg_cli.run(agg_cli.parser().parse_args([str(with_unfinished), "--out", str(out)])) == 0
    printed = capsys.readouterr().out
    assert "rate points 1 bpp not measured" in printed and "Acme [v2] (main) (unfinished)" in printed
    assert agg_cli.run(agg_cli.parser().parse_args([str(with_unfinished), "--out", str(out),
                                                    "--complete-only"])) == 0
    printed = capsys.readouterr().out
    assert "left out" in printed and "Acme [v2]" not in (out / "aggregate.csv").read_text()


# -- free text (issue 11) -------------------------------------------------------------------------------

def test_aggregate_escapes_free_text(with_unfinished):
    df = aggregate([with_unfinished])
    rows = list(csv.reader(io.StringIO(to_csv(df))))
    assert not any(c.startswith(("=", "+", "-", "@")) for r in rows for c in r)
    assert any(c == "'" + ACME_PROPONENT for r in rows for c in r)
    page = to_html(df)
    assert "=cmd|&#x27; /C calc&#x27;!A0" in page and "Acme [v2] (main)" in page
    md = to_markdown(df)
    line = next(x for x in md.splitlines() if "calc" in x)
    assert "=cmd\\|' /C calc'!A0" in line


# -- malformed reports: one line naming the file (issue 18 item 7) --------------------------------------

def _broken(kind: str) -> bytes:
    d = json.loads((FIXTURES / "report_fixnet.json").read_text())
    if kind == "list":
        return b"[1, 2]"
    if kind == "not utf-8":
        return b"\xff\xfe{}"
    if kind == "no submission":
        del d["submission"]
    elif kind == "counts = {}":
        d["rates"][0]["images"][0]["counts"] = {}
    elif kind == "conditions = []":
        d["conditions"] = []
    elif kind == "wrong type":
        d["rates"][0]["images"][0]["counts"]["decoder"]["macs"] = "many"
    elif kind == "rate is a number":
        d["rates"][0] = 5
    elif kind == "width 0":
        d["rates"][0]["images"][0]["width"] = 0
    return json.dumps(d).encode()


BROKEN = ["list", "not utf-8", "no submission", "counts = {}", "conditions = []", "wrong type",
          "rate is a number", "width 0"]


@pytest.mark.parametrize("kind", BROKEN)
def test_a_malformed_report_is_one_input_error_naming_the_file(three, kind):
    bad = three / "broken" / "report.json"
    bad.parent.mkdir()
    bad.write_bytes(_broken(kind))
    with pytest.raises(InputError) as exc:
        aggregate([three])
    assert exc.value.file == str(bad.resolve()) and "\n" not in str(exc.value)
    with pytest.raises(InputError):
        load_report(bad)


def test_precision_null_is_read(three):
    path = three / "fixnet" / "report.json"
    d = json.loads(path.read_text())
    d["rates"][0]["precision"] = None
    path.write_text(json.dumps(d))
    assert len(aggregate([three])) == 11


def test_cli_malformed_report_is_one_line(three):
    (three / "broken").mkdir()
    (three / "broken" / "report.json").write_bytes(_broken("counts = {}"))
    proc = run_cli("aggregate", str(three), "--out", str(three.parent / "agg"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken/report.json: rates[0].images[0].counts:" in lines[0] and "encoder, decoder" in lines[0]


def test_2_0_reports_aggregate_like_their_1_0_originals(three, tmp_path):
    """A 1.0 report rewritten as 2.0 gives the same table."""
    root = tmp_path / "v2"
    for name in ("fixnet", "betanet", "gamma"):
        (root / name).mkdir(parents=True)
        write_report(read_report(three / name / "report.json"), root / name / "report.json")
    a, b = aggregate([three]), aggregate([root])
    cols = [c for c in a.columns if c != "report"]
    assert a[cols].astype(str).equals(b[cols].astype(str))
