"""Every renderer from the fixed report fixtures, checked by value.

report_fixnet.json (schema 1.0, read through the upgrader): images are 200×100 = 20 000 px, so N MACs are
N / 20 000 / 1000 kMAC/px: rate 0.25: decoder 2 000 000 000 MACs = 100 kMAC/px, encoder 1 000 000 000 = 50;
rate 0.50: decoder 3 000 000 000 = 150 kMAC/px, encoder 1 200 000 000 = 60; rate 1.0 failed.

report_acme.json (schema 2.0, tests/fixtures/make_reports.py): free text that is markup, HTML, a
spreadsheet formula and a Markdown cell break; an unfinished run (1.0 bpp planned, never measured); an
incomplete decoder count of 4 000 000 MACs = 0.20 kMAC/px (a lower bound) and an incomplete encoder count
of 0 MACs (`n/c`).
"""

import csv
import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from profiler import SCHEMA_VERSION, derive
from profiler.model.io import load_schema, read_report, validate
from profiler.model.report import ScopeCost, Verdict
from profiler.render import console, csv_table, html, json_table, markdown, table, txt, vm, write_all
from profiler.render import verdict as verdict_render

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ACME_CODEC = "Acme [v2] (main)"
ACME_PROPONENT = "=cmd|' /C calc'!A0"
ACME_ERROR = "decode: RuntimeError: [/red] tensor on [cuda:0] <b>bold</b>, weights [/data/w.pt]"


@pytest.fixture
def report():
    return read_report(FIXTURES / "report_fixnet.json")


@pytest.fixture
def acme():
    return read_report(FIXTURES / "report_acme.json")


def _console_text(report) -> str:
    con = Console(record=True, width=250)
    console.render(report, con)
    return con.export_text()


def _with_image(report, rate: int, image):
    """The report with one rate point's first picture replaced (the models are frozen)."""
    r = report.rates[rate]
    rates = list(report.rates)
    rates[rate] = r.model_copy(update={"images": [image] + list(r.images[1:])})
    return report.model_copy(update={"rates": rates})


def test_schema_ships_with_the_package_and_matches_the_version():
    schema = load_schema()
    assert schema["x-schema-version"] == SCHEMA_VERSION
    assert "schema_version" in schema["required"] and "submission" in schema["required"]
    assert "rates" in schema["properties"] and "run" in schema["properties"]


def test_fixtures_validate_and_a_broken_report_is_located():
    for name in ("report_fixnet.json", "report_betanet.json", "report_acme.json"):
        assert validate(json.loads((FIXTURES / name).read_text())) == []
    assert read_report(FIXTURES / "report_fixnet.json").schema_version == "2.0"      # 1.0, upgraded
    data = json.loads((FIXTURES / "report_fixnet.json").read_text())
    data["rates"][1]["images"][0]["counts"]["decoder"]["macs"] = "many"
    data["rates"][0]["status"] = "maybe"
    del data["submission"]["codec"]
    errors = validate(data)
    assert any(e.startswith("$.rates[1].images[0].counts.decoder.macs: Input should be a valid integer")
               for e in errors)
    assert "$.rates[0].status: Input should be 'ok' or 'failed'" in errors
    assert "$.submission.codec: Field required" in errors
    assert len(errors) == 3


def test_worst_decoder_breakdown_rolls_up_children(report):
    where, rows = table.worst_decoder_breakdown(report)
    assert (where.target_bpp, where.image, where.width, where.height, where.kmac_px, where.macs) == \
        (0.5, "kodim23", 200, 100, 150.0, 3_000_000_000)
    assert where.complete and where.source == "decode()"
    mods = {m["module"]: m for m in table.module_rows(rows, 200, 100)}
    # decoder.g_s = g_s.0 (1.8e9) + g_s.2 (0.6e9) = 2.4e9 MACs = 120 kMAC/px, 80 % of the decoder.
    assert mods["decoder.g_s"]["macs"] == 2_400_000_000 and mods["decoder.g_s"]["self_macs"] == 0
    assert mods["decoder.g_s"]["kmac_px"] == pytest.approx(120.0) and mods["decoder.g_s"]["share"] == pytest.approx(0.8)
    assert mods["decoder"]["macs"] == 3_000_000_000 and mods["decoder"]["self_kmac_px"] == pytest.approx(15.0)
    _, top = table.top_modules(report, 2)
    assert [m["module"] for m in top] == ["decoder.g_s.0", "decoder.g_s.2"]


def test_compliance_view(report):
    verdict, rules = table.compliance_view(report)
    assert verdict == "fail"
    assert [(r["id"], r["status"], r["limit"]) for r in rules] == [("kmac.decoder", "pass", "reported"),
                                                                   ("rates.mandatory", "fail", "all of 0.25, 0.5, 1 bpp")]
    assert rules[1]["measured"] == "rate 1.0 failed to decode" and rules[1]["fix"].startswith("make the rate")
    # The verdict is the typed Verdict's own: the view never re-derives it from the rules.
    incomplete = report.compliance.model_copy(update={"verdict": "incomplete"})
    assert table.compliance_view(report.model_copy(update={"compliance": incomplete}))[0] == "incomplete"
    assert table.compliance_view(report.model_copy(update={"compliance": None})) == ("not evaluated", [])


def test_csv(report):
    text = csv_table.render(report)
    rows = list(csv.DictReader(io.StringIO(text.split("\n\n")[0])))
    assert [r["target_bpp"] for r in rows] == ["0.25", "0.5", "1.0"]
    assert float(rows[1]["kmac_px_decoder"]) == 150.0 and float(rows[1]["dec_gpu_s"]) == 0.015
    assert rows[2]["status"] == "failed" and rows[2]["kmac_px_decoder"] == "not measured"
    assert "params_total,3500" in text
    assert text.endswith("count_complete,True\ncomplete,True\nmissing_rates,\n")


def test_txt_is_fixed_width(report):
    lines = txt.render(report).splitlines()
    assert "verdict      : fail" in lines
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("target_bpp"))
    table_lines = lines[header:header + 4]
    assert len({len(line) for line in table_lines}) == 1           # every line the same width
    assert table_lines[2].split() == ["0.50", "ok", "0.5000", "33.00", "1000", "2000", "60.00", "150.00", "0.6000",
                                      "0.3000", "0.0300", "0.0150", "70.00", "80.00", "120.00", "130.00",
                                      "float32", "float32",
                                      # vm: encoder as strict; decoder 300 + 1 800 + 20 (activation) + 4 × 600
                                      # (transposed conv per output position) + 20 (bias) + 300 = 4 840 M MACs
                                      "60.00", "242.00", "True"]
    assert table_lines[3].split()[:4] == ["1.00", "failed", "n/m", "n/m"]
    assert "params_total          : 3500" in lines
    assert "rate 1 failed: decode: RuntimeError: boom" in lines


def test_markdown(report):
    md = markdown.render(report)
    assert "| 0.50 | ok | 0.5000 | 33.00 | 1,000 | 2,000 | 60.00 | 150.00 | 0.6000 | 0.3000 |" in md
    assert "Worst-case decoder: 150.00 kMAC/px at 0.5 bpp, kodim23." in md


def test_json_table(report):
    d = json.loads(json_table.render(report))
    assert d["verdict"] == "fail" and d["summary"]["params_total"] == 3500
    assert d["rows"][0]["kmac_px_decoder"] == 100.0 and d["rows"][0]["enc_gpu_s"] == 0.02
    assert d["rows"][2]["kmac_px_decoder"] is None          # failed: null, never 0
    assert d["complete"] is True and d["missing_rates"] == [] and d["planned_rates"] == [0.25, 0.5, 1.0]
    assert d["kmac_px_decoder_worst_at"]["image"] == "kodim23" and d["kmac_px_decoder_worst_at"]["complete"]


def test_vm_export_uses_the_reference_software_keys(report):
    d = json.loads(vm.render(report))
    r025, r050, r100 = d["rates"]
    assert {"kmac", "encCPU", "decCPU", "encGPU", "decGPU"} <= set(r025["images"]["kodim23"])
    assert (r025["kmac"], r025["encCPU"], r025["decCPU"], r025["encGPU"], r025["decGPU"]) == (100.0, 0.5, 0.25, 0.02, 0.01)
    assert d["kmac_convention"] == "strict" and r050["kmac"] == r050["kmac_strict"] == 150.0
    # VM convention at 0.25 bpp: g_s.2's 0.4e9 MACs ×4 (transposed conv per output position) = 1.6e9,
    # + 20e6 bias + 20e6 activation elements: 0.2e9 + 1.2e9 + 1.6e9 + 0.02e9 + 0.02e9 + 0.2e9 = 3.24e9
    # = 162 kMAC/px. At 0.5 bpp: 0.3 + 1.8 + 2.4 + 0.02 + 0.02 + 0.3 = 4.84e9 = 242 kMAC/px.
    assert r025["kmac_vm"] == pytest.approx(162.0) and r050["kmac_vm"] == pytest.approx(242.0)
    assert r100["status"] == "failed" and r100["kmac"] is None and r100["decCPU"] is None


def test_html_is_self_contained_and_shows_every_section(report):
    page = html.render(report)
    assert page == html.render(report)                       # deterministic
    assert page.count('<img class="plot"') == 4
    assert re.findall(r'src="([^"]+)"', page) and all(s.startswith("data:image/svg+xml;base64,")
                                                      for s in re.findall(r'src="([^"]+)"', page))
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    assert "<link" not in page
    assert "id=verdict>fail</span>" in page
    assert "<td>decoder.g_s</td><td class=num>2,400,000,000</td><td class=num>0</td><td class=num>120.00</td>" in page
    assert "Fixture CPU" in page and "Fixture GPU" in page                  # environment
    assert "<th>timing.repeats</th><td>3</td>" in page                        # test conditions
    assert "Rate 1 failed: decode: RuntimeError: boom" in page
    assert "<td>rates.mandatory</td><td>mandatory</td><td>fail</td><td>rate 1.0 failed to decode</td>" in page


def test_console_shows_table_top_modules_and_verdict(report):
    con = Console(record=True, width=250)
    console.render(report, con)
    text = con.export_text()
    assert "compliance verdict: fail" in text and "rates.mandatory: fail — rate 1.0 failed to decode → fix: make the rate point at 1 bpp run" in text
    line = next(x for x in text.splitlines() if "decoder.g_s.0" in x)
    assert "90.00" in line and "60.0 %" in line
    assert "worst-case decoder: 150.00 kMAC/px" in text


def test_console_counting_lines_per_rate_and_grouped(report):
    con = Console(record=True, width=250)
    console.render(report, con)
    text = con.export_text()
    # rate 0.5: 150 kMAC/px strict, 242 vm (see test_txt_is_fixed_width); rate 0.25: 100 strict
    assert "rate 0.5: decoder 150.00 kMAC/px strict, 242.00 vm; count complete" in text
    assert "rate 0.25: decoder 100.00 kMAC/px strict" in text
    # one model at two rates: one line for both
    report = _with_image(report, 1, report.rates[0].images[0])
    text = _console_text(report)
    assert "rates 0.25–0.5 (2): decoder 100.00 kMAC/px strict" in text and "rate 0.5:" not in text


def test_renderers_tolerate_absent_optional_fields(report):
    rates = []
    for r in report.rates:
        imgs = [i.model_copy(update={"timing": {k: v for k, v in i.timing.items() if k != "cuda"},
                                     "memory": {k: v for k, v in i.memory.items() if k != "cuda"},
                                     "quality": {}}) for i in r.images]
        rates.append(r.model_copy(update={"images": imgs}))
    report = report.model_copy(update={"compliance": None, "rates": rates})
    page = html.render(report)
    assert "not evaluated" in page
    d = json.loads(vm.render(report))
    assert d["rates"][0]["encGPU"] is None and d["rates"][0]["encCPU"] == 0.5


def test_renderers_do_not_change_the_report(report, acme):
    for rep in (report, acme):
        before = rep.model_dump()
        for mod in (csv_table, json_table, markdown, txt, vm, html):
            mod.render(rep)
        _console_text(rep)
        assert rep.model_dump() == before
    assert report.summary is None          # the 1.x summary is never trusted; nobody stored a new one


def test_write_all_writes_every_format(report, tmp_path):
    paths = write_all(report, tmp_path)
    assert sorted(p.name for p in paths) == ["report.html", "report.json", "table.csv", "table.json", "table.md",
                                             "table.txt", "vm.json"]
    written = read_report(tmp_path / "report.json")
    assert written.schema_version == "2.0" and written.summary.kmac_px_decoder_worst == 150.0   # stored fresh
    assert written.summary == derive.summary(report)
    # The renderers give the same output for the report and for its 2.0 file read back.
    assert (tmp_path / "table.md").read_text() == markdown.render(written)
    assert (tmp_path / "table.csv").read_text() == csv_table.render(written)


def test_html_breakdown_leaves_out_scopes_without_macs(report):
    img = report.rates[1].images[0]
    dec = img.counts["decoder"]
    pm = {**dec.per_module, "decoder.g_s.1.beta_reparam": ScopeCost(macs=0, vm_macs=0, bias=0,
                                                                    elements={"arithmetic": 64})}
    counts = {**img.counts, "decoder": dec.model_copy(update={"per_module": pm})}
    report = _with_image(report, 1, img.model_copy(update={"counts": counts}))
    names = [m["module"] for m in html.worst_modules(report)]
    assert "decoder.g_s.1.beta_reparam" not in names
    assert names[:2] == ["decoder.g_s", "decoder.g_s.0"]      # 2.4e9 and 1.8e9 MACs


# -- the worst case is a counted resolution: its own breakdown, never a test picture's ------------------

def test_a_resolution_worst_case_shows_that_resolutions_breakdown(report):
    from profiler.model.report import PartCount, Resolution

    # 1920×1080 = 2 073 600 px; 414 720 000 000 MACs = 200 kMAC/px, above the pictures' 150.
    pm = {"decoder": ScopeCost(macs=14_720_000_000, vm_macs=14_720_000_000, bias=0),
          "decoder.attn.0": ScopeCost(macs=400_000_000_000, vm_macs=400_000_000_000, bias=0)}
    res = Resolution(width=1920, height=1080, method="meta", seconds=1.0,
                     decoder=PartCount(macs=414_720_000_000, complete=True, per_module=pm))
    rates = list(report.rates)
    rates[0] = rates[0].model_copy(update={"resolutions": [res]})
    report = report.model_copy(update={"rates": rates})
    where, breakdown = table.worst_decoder_breakdown(report)
    assert (where.image, where.width, where.height, where.kmac_px) == (None, 1920, 1080, pytest.approx(200.0))
    assert sum(c.macs for c in breakdown.values()) == derive.summary(report).kmac_px_decoder_worst_at.macs
    text = _console_text(report)
    # (the table title wraps to the table's width: compare with whitespace folded)
    assert "top decoder modules at 0.25 bpp, resolution count 1920×1080 (200.00 kMAC/px)" in " ".join(text.split())
    line = next(x for x in text.splitlines() if "decoder.attn.0" in x)
    assert "192.90" in line and "96.5 %" in line          # 400e9 / 2 073 600 / 1000; 400 / 414.72
    assert "decoder.g_s.0" not in text                     # no test picture's breakdown
    page = html.render(report)
    assert "At 0.25 bpp, resolution count 1920×1080: 414,720,000,000 MACs." in page
    assert "<td>decoder.attn.0</td>" in page and "<td>decoder.g_s.0</td>" not in page


# -- free text: shown as written, escaped for each format ----------------------------------------------

def test_console_shows_free_text_as_written(acme):
    text = _console_text(acme)                      # no MarkupError
    assert f"{ACME_CODEC} — {ACME_PROPONENT}" in text
    assert f"rate 0.5 failed: {ACME_ERROR}" in text        # [/red], [cuda:0], [/data/w.pt] all literal
    assert "decoder.g_s[0]" in text                        # a module name with brackets


def test_console_fix_hint_keeps_double_brackets(report):
    rule = report.compliance.rules[1].model_copy(update={"fix": "add a [[rates]] table for 1 bpp [cuda:0]"})
    comp = report.compliance.model_copy(update={"rules": [report.compliance.rules[0], rule]})
    text = _console_text(report.model_copy(update={"compliance": comp}))
    assert "→ fix: add a [[rates]] table for 1 bpp [cuda:0]" in text
    con = Console(record=True, width=250)
    verdict_render.render(comp, con)
    out = con.export_text()
    assert "→ fix: add a [[rates]] table for 1 bpp [cuda:0]" in out and "[limit: all of 0.25, 0.5, 1 bpp]" in out
    assert out.splitlines()[-1] == "verdict: FAIL (rules from ?)"


def test_html_escapes_free_text(acme):
    page = html.render(acme)
    assert "<h1>Acme [v2] (main) — =cmd|&#x27; /C calc&#x27;!A0</h1>" in page
    assert "decode: RuntimeError: [/red] tensor on [cuda:0] &lt;b&gt;bold&lt;/b&gt;, weights [/data/w.pt]" in page
    assert "<b>bold</b>" not in page


def test_csv_prefixes_formula_cells_and_keeps_numbers(acme):
    text = csv_table.render(acme)
    rows = list(csv.DictReader(io.StringIO(text.split("\n\n")[0])))
    assert rows[0]["proponent"] == "'" + ACME_PROPONENT and rows[0]["codec"] == ACME_CODEC
    assert rows[0]["kmac_px_decoder"] == "0.2" and rows[0]["kmac_px_encoder"] == "0.0"   # numbers as they are
    assert rows[0]["count_complete"] == "False"
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in csv.reader(io.StringIO(text)) for cell in row)


def test_csv_cell_rule():
    from profiler.render.escape import csv_cell

    assert [csv_cell(v) for v in ("=1+1", "+x", "-x", "@x", "x=1", -1.5, 0, None, True)] == \
        ["'=1+1", "'+x", "'-x", "'@x", "x=1", -1.5, 0, None, True]


def test_markdown_escapes_free_text(acme):
    md = markdown.render(acme)
    assert md.startswith("# Acme \\[v2\\] (main) (=cmd\\|' /C calc'!A0) — JPEG AI complexity\n")
    assert "- rate 0.5 failed: decode: RuntimeError: \\[/red\\] tensor on \\[cuda:0\\] \\<b>bold\\</b>" in md
    # every table row has exactly the columns' cells: no `|` from the text splits one
    rows = [line for line in md.splitlines() if line.startswith("| 0.")]
    assert len(rows) == 2 and all(len(re.split(r"(?<!\\)\|", r)) == len(table.COLUMNS[2:]) + 2 for r in rows)


def test_txt_json_vm_show_free_text_as_written(acme):
    lines = txt.render(acme).splitlines()
    assert f"codec        : {ACME_CODEC}" in lines and f"proponent    : {ACME_PROPONENT}" in lines
    assert f"rate 0.5 failed: {ACME_ERROR}" in lines
    d = json.loads(json_table.render(acme))
    assert (d["codec"], d["proponent"], d["rows"][0]["proponent"]) == (ACME_CODEC, ACME_PROPONENT, ACME_PROPONENT)
    assert json.loads(vm.render(acme))["codec"] == ACME_CODEC


# -- an unfinished run says so everywhere -------------------------------------------------------------

UNFINISHED = ("the run did not finish (state running): rate points planned and not measured: 1 bpp; "
              "the summary figures cover only the rate points measured")


def test_every_renderer_shows_an_unfinished_run(acme, report):
    assert derive.missing_rates(acme) == [1.0] and not derive.is_complete(acme)
    text = _console_text(acme)
    assert f"incomplete: {UNFINISHED}" in text
    assert "summary over the rate points measured only (the run did not finish): largest model" in text
    assert f'id=incomplete style=' in html.render(acme) and UNFINISHED in html.render(acme)
    md = markdown.render(acme)
    assert f"> **Incomplete** — {UNFINISHED}." in md and "| summary (rate points measured only) | value |" in md
    lines = txt.render(acme).splitlines()
    assert f"incomplete   : {UNFINISHED}" in lines
    assert "summary over the rate points measured only (the run did not finish):" in lines
    d = json.loads(json_table.render(acme))
    assert d["complete"] is False and d["missing_rates"] == [1.0] and d["planned_rates"] == [0.25, 0.5, 1.0]
    assert csv_table.render(acme).endswith("complete,False\nmissing_rates,1\n")
    v = json.loads(vm.render(acme))
    assert v["complete"] is False and v["missing_rates"] == [1.0]
    # a finished run says nothing of the kind
    for out in (_console_text(report), html.render(report), markdown.render(report), txt.render(report)):
        assert "did not finish" not in out


def test_a_running_state_without_missing_rates_is_still_unfinished(report):
    running = report.model_copy(update={"run": report.run.model_copy(update={"state": "running"})})
    assert table.unfinished(running) == "the run did not finish (state running); the summary figures cover " \
                                        "only the rate points measured"
    assert json.loads(json_table.render(running))["complete"] is False


# -- an incomplete count is a lower bound, never a bare figure (and never 0.00) -----------------------

def test_incomplete_counts_are_lower_bounds_in_text_and_html(acme):
    # decoder: 4 000 000 MACs / 20 000 px = 0.20 kMAC/px, incomplete; encoder: 0 MACs, incomplete
    row = table.rows(acme)[0]
    assert row["kmac_px_decoder"] == pytest.approx(0.2) and isinstance(row["kmac_px_decoder"], table.AtLeast)
    assert table.fmt(row["kmac_px_decoder"]) == "≥ 0.20" and table.fmt(row["kmac_px_encoder"]) == "n/c"
    text = _console_text(acme)
    assert "worst-case decoder: ≥ 0.20 kMAC/px" in text and "encoder max: n/c" in text
    assert "rate 0.25: decoder ≥ 0.20 kMAC/px strict, ≥ 0.20 vm; uncounted ops: aten::mystery×4" in text
    assert "(≥ 0.20 kMAC/px)" in text                      # the top-modules title
    assert not re.search(r"(?<![\d.])0\.00\b", text)        # no bare zero anywhere
    page = html.render(acme)
    assert "<td class=num>n/c</td><td class=num>≥ 0.20</td>" in page
    assert "Worst-case decoder: <b>≥ 0.20</b> kMAC/px" in page and "(count incomplete: a lower bound)" in page
    md = markdown.render(acme)
    assert "| 0.25 | ok | 0.2500 | 30.00 | not measured | not measured | n/c | ≥ 0.20 |" in md
    assert "| kmac_px_decoder_worst | ≥ 0.20 |" in md and "Worst-case decoder: ≥ 0.20 kMAC/px" in md
    lines = txt.render(acme).splitlines()
    assert "kmac_px_decoder_worst : ≥0.20" in lines and "kmac_px_encoder_max   : n/c" in lines
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("target_bpp"))
    assert lines[header + 1].split()[6:8] == ["n/c", "≥0.20"]          # still one token per column


def test_incomplete_counts_keep_their_number_in_csv_and_json(acme):
    d = json.loads(json_table.render(acme))
    assert d["rows"][0]["kmac_px_decoder"] == pytest.approx(0.2) and d["rows"][0]["count_complete"] is False
    assert d["summary"]["kmac_px_encoder_max"] == 0.0 and d["kmac_px_decoder_worst_at"]["complete"] is False
    rows = list(csv.reader(io.StringIO(csv_table.render(acme).split("\n\n")[1])))
    assert ["kmac_px_decoder_worst", "0.2"] in rows and ["count_complete", "False"] in rows
    v = json.loads(vm.render(acme))
    assert v["rates"][0]["kmac"] == pytest.approx(0.2) and v["rates"][0]["count_complete"] is False
    assert v["rates"][0]["images"]["kodim23"]["count_complete"] is False


def test_a_complete_count_is_shown_bare(report):
    assert not isinstance(table.rows(report)[1]["kmac_px_decoder"], table.AtLeast)
    assert "≥" not in _console_text(report) and "≥" not in html.render(report) and "n/c" not in txt.render(report)
