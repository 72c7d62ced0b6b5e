"""BD-rates in the views (console, Markdown, HTML with RD plots, also in a real browser), anchor marking,
`profile --anchors` input checks, and the aggregate's complexity–performance table."""

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from profiler.aggregation import aggregate, to_html as aggregate_html, to_markdown as aggregate_md
from profiler.bdrate import with_bd_rates
from profiler.cli import main
from profiler.cli.anchors import BUNDLED, mark_anchor
from profiler.errors import InputError
from profiler.model.io import write_report
from profiler.model.report import NotMeasuredCode
from profiler.render import console as console_render, html, markdown
from tests.test_bdrate import _report


def _anchor(factor=1.0, name="JPEG2000"):
    return mark_anchor(_report(factor, name), BUNDLED["jpeg2000"])


@pytest.fixture
def compared():
    """A submission whose pictures cost 0.8 × the anchor's rates at the same quality: −20 %."""
    return with_bd_rates(_report(0.8, "testnet"), [("a/report.json", _anchor())])


def test_anchor_report_is_marked_and_complexity_not_applicable():
    a = _anchor()
    assert a.anchor.substitute_for == "Kakadu (JPEG 2000)"
    assert a.not_measured["complexity"].code is NotMeasuredCode.NOT_APPLICABLE
    assert "substitute for Kakadu" in markdown.render(a) and "complexity not applicable" in markdown.render(a)


def test_console_and_markdown_show_the_bd_summary(compared):
    buf = io.StringIO()
    console_render.render(compared, Console(file=buf, width=250))
    text = buf.getvalue()
    assert "BD-rate against the anchors" in text
    assert "JPEG2000 (substitute for Kakadu (JPEG 2000))" in text
    assert text.count("-20.00 %") >= 4            # PSNR-RGB, PSNR-Y, MS-SSIM, NLPD, AVG BD
    md = markdown.render(compared)
    row = next(line for line in md.splitlines() if line.startswith("| JPEG2000"))
    assert row.split("|")[-2].strip() == "-20.00 %"                      # the AVG BD column
    assert r"AVG BD without iw\_ssim, vmaf, vifp, psnr\_hvs\_m, fsim" in md       # Markdown-escaped


def test_html_has_the_bd_tables_and_one_pair_of_rd_plots_per_metric(compared):
    page = html.render(compared)
    assert "id=bd-rates" in page and "id=rd-plots" in page
    # psnr_y, psnr_u…: the metrics in the comparison; each has a mean and a per-picture plot.
    n_metrics = len({m.metric for m in compared.bd_rates[0].metrics})
    assert page.count('class="plot rd"') == 2 * n_metrics
    assert "Per picture against JPEG2000" in page


def test_profile_anchors_option_refuses_a_folder_without_anchor_reports(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    write_report(_report(1.0), tmp_path / "x" / "report.json")       # a report, but not an anchor's
    from profiler.cli.profile import load_anchors

    with pytest.raises(InputError, match="holds no anchor report"):
        load_anchors(tmp_path)
    with pytest.raises(InputError, match="folder not found"):
        load_anchors(tmp_path / "missing")
    (tmp_path / "a").mkdir()
    write_report(_anchor(), tmp_path / "a" / "report.json")
    found = load_anchors(tmp_path)
    assert [Path(p).parent.name for p, _ in found] == ["a"]


def test_anchors_command_bad_options_are_one_line(capsys):
    assert main(["anchors", "--only", "vvc"]) == 2
    assert "unknown anchor vvc" in capsys.readouterr().err
    assert main(["anchors", "--submission", "x"]) == 2
    assert "--substitute-for" in capsys.readouterr().err


def _write_reports(tmp_path):
    reports = tmp_path / "reports"
    for name, rep in (("testnet", _report(0.8, "testnet")), ("othernet", _report(1.1, "othernet")),
                      ("anchor", _anchor())):
        (reports / name).mkdir(parents=True)
        if name != "anchor":
            rep = with_bd_rates(rep, [("anchor/report.json", _anchor())])
        write_report(rep, reports / name / "report.json")
    return reports


def test_aggregate_complexity_performance_table(tmp_path):
    df = aggregate([_write_reports(tmp_path)])
    perf = df.attrs["performance"]
    assert [r["decoder"] for r in perf] == ["othernet", "testnet"]          # the anchor is not a row
    by = {r["decoder"]: r for r in perf}
    assert by["testnet"]["avg_bd"]["JPEG2000"] == pytest.approx(-20.0)
    assert by["othernet"]["avg_bd"]["JPEG2000"] == pytest.approx(10.0)
    assert by["testnet"]["kmac_px_decoder_worst"] == 0.0
    md = aggregate_md(df)
    assert "## Complexity–performance" in md
    section = md.split("## Complexity–performance", 1)[1].split("## ", 1)[0]
    line = next(x for x in section.splitlines() if x.startswith("| Test Lab | testnet"))
    assert line.split(" | ")[2:4] == ["0.0", "-20.00 %"]             # kMAC/px, AVG BD vs JPEG2000
    page = aggregate_html(df)
    assert "id=perf-table" in page and "one point per decoder and anchor" in page


def test_rd_plots_and_the_performance_plot_render_in_the_browser(tmp_path, compared):
    from tests import test_browser as tb

    if tb.CHROMIUM is None:
        pytest.skip("chromium not installed (the README's test set-up installs it)")
    page = tmp_path / "report.html"
    page.write_text(html.render(compared), encoding="utf-8")
    dom, messages, img = tb.load(page, tmp_path)
    assert messages == []
    n = 4 + 2 * len({m.metric for m in compared.bd_rates[0].metrics})     # the report's 4 plots and the RD plots
    assert f'data-plots-total="{n}"' in dom and f'data-plots-loaded="{n}"' in dom
    agg = tmp_path / "aggregate.html"
    agg.write_text(aggregate_html(aggregate([_write_reports(tmp_path)])), encoding="utf-8")
    dom, messages, _ = tb.load(agg, tmp_path)
    assert messages == [] and 'data-plots-total="4"' in dom and 'data-plots-loaded="4"' in dom


def test_an_anchor_without_counted_resolutions_is_not_flagged_but_other_conditions_are(tmp_path):
    reports = _write_reports(tmp_path)
    path = reports / "anchor" / "report.json"
    a = _anchor()
    cond = a.conditions.model_copy(update={"counting": a.conditions.counting.model_copy(update={"resolutions": []})})
    write_report(a.model_copy(update={"conditions": cond}), path)
    assert aggregate([reports]).attrs["warnings"] == {}
    cond = cond.model_copy(update={"target_rates": [0.5]})             # the rates do apply to an anchor
    write_report(a.model_copy(update={"conditions": cond}), path)
    warns = aggregate([reports]).attrs["warnings"]
    assert list(warns) == [str(path)] and "target_rates" in warns[str(path)]


def test_an_anchor_row_of_the_aggregate_has_complexity_not_applicable(tmp_path):
    """Anchors are rows for their rates and quality; their complexity is *not applicable* (never 0 kMAC/px
    in the plots, never "not measured"), their verdict `anchor`."""
    import math

    df = aggregate([_write_reports(tmp_path)])
    anchor = df[df["codec"] == "JPEG2000"]
    summary = anchor[anchor["row"] == "summary"].iloc[0]
    assert summary["verdict"] == "anchor" and summary["anchor"] == "Kakadu (JPEG 2000)"
    assert math.isnan(summary["kmac_px_decoder_worst"])
    rates = anchor[anchor["row"] == "rate"]
    assert len(rates) and all(math.isnan(v) for v in rates["kmac_px_decoder"])
    assert all(v > 0 for v in rates["bpp"])                                # its rates stay
    measured = df[(df["codec"] == "testnet") & (df["row"] == "summary")].iloc[0]
    assert measured["verdict"] != "anchor" and measured["anchor"] == ""
    md = aggregate_md(df)
    line = next(x for x in md.splitlines() if x.startswith("| ") and "| JPEG2000 | not applicable" in x)
    assert "not measured" not in line and line.rstrip(" |").endswith("anchor")


def test_a_mean_over_some_of_the_pictures_says_over_how_many():
    """Picture b's PSNR-Y is undefined at one rate point: its mean is over 1 of the 2 pictures, and every
    view says so beside the number; a mean over every picture carries no mark."""
    test = _report(0.8, "testnet")
    rates = list(test.rates)
    r0 = rates[0]
    pics = [p if p.name != "b" else p.model_copy(update={"quality": {**p.quality, "psnr_y": None}}) for p in r0.images]
    rates[0] = r0.model_copy(update={"images": pics})
    compared = with_bd_rates(test.model_copy(update={"rates": rates}), [("a/report.json", _anchor())])
    md = markdown.render(compared)
    row = next(line for line in md.splitlines() if line.startswith("| JPEG2000")).split(" | ")
    header = next(line for line in md.splitlines() if line.startswith("| anchor |")).split(" | ")
    assert row[header.index("PSNR-Y")] == "-20.00 % (1/2)"
    assert row[header.index("PSNR-RGB")] == "-20.00 %"
    buf = io.StringIO()
    console_render.render(compared, Console(file=buf, width=250))
    assert "-20.00 % (1/2)" in buf.getvalue()
    assert "-20.00 % (1/2)" in html.render(compared)
