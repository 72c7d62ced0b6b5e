"""Every renderer from the fixed report fixture (tests/fixtures/report_fixnet.json), checked by value.

The fixture's images are 200×100 = 20 000 px, so N MACs are N / 20 000 / 1000 kMAC/px:
rate 0.25: decoder 2 000 000 000 MACs = 100 kMAC/px, encoder 1 000 000 000 = 50;
rate 0.50: decoder 3 000 000 000 = 150 kMAC/px, encoder 1 200 000 000 = 60; rate 1.0 failed.
"""

import csv
import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from profiler import SCHEMA_VERSION
from profiler.render import console, csv_table, html, json_table, markdown, table, txt, vm, write_all
from profiler.report import read_report
from profiler.schema import load_schema, validate

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def report():
    return read_report(FIXTURES / "report_fixnet.json")


def test_schema_ships_with_the_package_and_matches_the_version():
    schema = load_schema()
    assert schema["x-schema-version"] == SCHEMA_VERSION
    assert "schema_version" in schema["required"] and "rates" in schema["required"]


def test_fixtures_validate_and_a_broken_report_is_located():
    for name in ("report_fixnet.json", "report_betanet.json"):
        assert validate(json.loads((FIXTURES / name).read_text())) == []
    data = json.loads((FIXTURES / "report_fixnet.json").read_text())
    data["rates"][1]["images"][0]["counts"]["decoder"]["macs"] = "many"
    data["rates"][0]["status"] = "maybe"
    del data["submission"]["codec"]
    errors = validate(data)
    assert "$.rates[1].images[0].counts.decoder.macs: expected integer, got str" in errors
    assert any(e.startswith("$.rates[0].status: expected one of") for e in errors)
    assert "$.submission: missing required field 'codec'" in errors
    assert len(errors) == 3


def test_worst_decoder_breakdown_rolls_up_children(report):
    where, rows = table.worst_decoder_breakdown(report)
    assert where == {"target_bpp": 0.5, "image": "kodim23", "width": 200, "height": 100, "kmac_px": 150.0,
                     "macs": 3_000_000_000}
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
    report.compliance = {"rules": [{"id": "a", "status": "pass"}, {"id": "b", "status": "fail"}]}
    assert table.compliance_view(report)[0] == "fail"      # derived when the report states none
    report.compliance = None
    assert table.compliance_view(report) == ("not evaluated", [])


def test_csv(report):
    text = csv_table.render(report)
    rows = list(csv.DictReader(io.StringIO(text.split("\n\n")[0])))
    assert [r["target_bpp"] for r in rows] == ["0.25", "0.5", "1.0"]
    assert float(rows[1]["kmac_px_decoder"]) == 150.0 and float(rows[1]["dec_gpu_s"]) == 0.015
    assert rows[2]["status"] == "failed" and rows[2]["kmac_px_decoder"] == "not measured"
    assert "params_total,3500" in text


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
    report.rates[1].images = report.rates[0].images
    con = Console(record=True, width=250)
    console.render(report, con)
    text = con.export_text()
    assert "rates 0.25–0.5 (2): decoder 100.00 kMAC/px strict" in text and "rate 0.5:" not in text


def test_renderers_tolerate_absent_optional_fields(report):
    report.compliance = None
    for r in report.rates:
        for img in r.images:
            img.timing.pop("cuda", None)
            img.memory.pop("cuda", None)
            img.quality = {}
    page = html.render(report)
    assert "not evaluated" in page
    d = json.loads(vm.render(report))
    assert d["rates"][0]["encGPU"] is None and d["rates"][0]["encCPU"] == 0.5


def test_write_all_writes_every_format(report, tmp_path):
    paths = write_all(report, tmp_path)
    assert sorted(p.name for p in paths) == ["report.html", "report.json", "table.csv", "table.json", "table.md",
                                             "table.txt", "vm.json"]
    assert read_report(tmp_path / "report.json").summary["kmac_px_decoder_worst"] == 150.0


def test_html_breakdown_leaves_out_scopes_without_macs(report):
    img = report.rates[1].images[0]
    img.counts["decoder"]["per_module"]["decoder.g_s.1.beta_reparam"] = {"macs": 0, "vm_macs": 0, "bias": 0,
                                                                         "elements": {"arithmetic": 64}}
    names = [m["module"] for m in html.worst_modules(report)]
    assert "decoder.g_s.1.beta_reparam" not in names
    assert names[:2] == ["decoder.g_s", "decoder.g_s.0"]      # 2.4e9 and 1.8e9 MACs
