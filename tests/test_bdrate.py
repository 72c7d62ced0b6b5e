"""BD-rates of a report against an anchor report (profiler/bdrate.py), on hand-made RD curves."""

import math

import pytest

from profiler.bdrate import AVG_METRICS, bd_value, compare, with_bd_rates
from profiler.model.report import RateResult
from tests.conftest import minimal_report

RATES = [0.12, 0.25, 0.5, 1.0, 2.0]
PSNR = [27.0, 29.5, 32.5, 36.0, 40.0]
MSSSIM = [0.90, 0.94, 0.965, 0.98, 0.99]


def _report(rate_factor: float, name="codec", psnr=PSNR, msssim=MSSSIM, pictures=("a", "b"), rates=RATES):
    """A report whose pictures sit at `rates × rate_factor` bpp with the given qualities."""
    rs = []
    for i, (t, p, m) in enumerate(zip(rates, psnr, msssim)):
        pics = [{"name": n, "width": 8, "height": 8, "bytes": 1, "bpp": t * rate_factor, "psnr_rgb": p,
                 "counts": {"encoder": {"macs": 0, "complete": True}, "decoder": {"macs": 0, "complete": True}},
                 "quality": {"psnr_y": p + 1, "ms_ssim_y": m, "nlpd": 0.5 - m / 2}} for n in pictures]
        rs.append(RateResult.model_validate({"index": i, "target_bpp": t, "images": pics}))
    rep = minimal_report(rs)
    return rep.model_copy(update={"submission": rep.submission.model_copy(update={"codec": name})})


def test_rates_times_0_9_at_the_same_quality_is_minus_ten_percent():
    anchor, test = _report(1.0, "anchor"), _report(0.9)
    bd = compare(test, anchor, metrics=("psnr_rgb", "psnr_y", "ms_ssim_y", "nlpd"))
    for m in bd.metrics:
        assert m.pictures_used == 2, m
        assert m.mean_percent == pytest.approx(-10.0, abs=1e-9), m.metric
        assert m.pictures["a"].overlap_bpp == pytest.approx((0.12, 1.8))
    # Rates × 1.25: +25 %; the anchor is the other way round: 1/1.25 − 1 = −20 %.
    assert compare(_report(1.25), anchor, metrics=("psnr_rgb",)).metrics[0].mean_percent == pytest.approx(25.0)
    assert compare(anchor, _report(1.25), metrics=("psnr_rgb",)).metrics[0].mean_percent == pytest.approx(-20.0)


def test_avg_bd_is_the_mean_over_the_metrics_that_have_one_and_names_them():
    anchor = _report(1.0, "anchor")
    test = _report(0.8, msssim=[0.90, 0.94, 0.965, 0.98, 0.99])
    bd = compare(test, anchor)
    assert bd.avg_metrics == ["ms_ssim_y", "nlpd"]                 # the others are not in these reports
    assert bd.avg_percent == pytest.approx(-20.0)
    assert "iw_ssim" in bd.avg_note and "vmaf" in bd.avg_note
    assert set(AVG_METRICS) == {"ms_ssim_y", "iw_ssim", "vmaf", "vifp", "psnr_hvs_m", "nlpd", "fsim"}
    vmaf = next(m for m in bd.metrics if m.metric == "vmaf")
    assert vmaf.mean_percent is None and "not defined" in vmaf.reason


def test_ms_ssim_enters_in_db_and_nlpd_negated():
    assert bd_value("ms_ssim_y", 0.99) == pytest.approx(20.0)
    assert bd_value("ms_ssim_y", 0.9) == pytest.approx(10.0)
    assert bd_value("nlpd", 0.25) == -0.25
    assert bd_value("vmaf", 80.0) == 80.0
    assert bd_value("psnr_y", None) is None


def test_not_computed_with_fewer_than_four_points_or_a_non_monotonic_curve():
    anchor = _report(1.0, "anchor")
    three = _report(0.9, rates=RATES[:3], psnr=PSNR[:3], msssim=MSSSIM[:3])
    m = compare(three, anchor, metrics=("psnr_rgb",)).metrics[0]
    assert m.mean_percent is None and "at least 4" in m.reason
    bumpy = _report(0.9, psnr=[27.0, 29.5, 29.0, 36.0, 40.0])
    m = compare(bumpy, anchor, metrics=("psnr_rgb",)).metrics[0]
    assert m.mean_percent is None and "strictly increase" in m.reason
    assert m.pictures["a"].percent is None


def test_mean_over_pictures_and_a_lower_anchor_range():
    # Picture b of the test costs rates × 0.5 (−50 %), a rates × 0.9 (−10 %): mean −30 %.
    anchor = _report(1.0, "anchor")
    a = _report(0.9, pictures=("a",))
    b = _report(0.5, pictures=("b",))
    rates = [ra.model_copy(update={"images": ra.images + rb.images}) for ra, rb in zip(a.rates, b.rates)]
    test = a.model_copy(update={"rates": rates})
    m = compare(test, anchor, metrics=("psnr_rgb",)).metrics[0]
    assert m.pictures["a"].percent == pytest.approx(-10.0)
    assert m.pictures["b"].percent == pytest.approx(-50.0)
    assert m.mean_percent == pytest.approx(-30.0)
    # The anchor reaches only 0.25 bpp and up: the rates both reach are named.
    high = _report(1.0, "anchor", rates=RATES[1:], psnr=PSNR[1:], msssim=MSSSIM[1:])
    m = compare(_report(0.9), high, metrics=("psnr_rgb",)).metrics[0]
    assert m.pictures["a"].anchor_bpp == (0.25, 2.0)
    assert m.pictures["a"].overlap_bpp == pytest.approx((0.25, 1.8))
    # Over the shared quality range only; the test curve's extra lowest point changes its pchip slopes at
    # the range's end, so the figure is near, not exactly, −10 %.
    assert m.mean_percent == pytest.approx(-10.0, abs=0.2)


def test_with_bd_rates_returns_a_copy():
    anchor, test = _report(1.0, "anchor"), _report(0.9)
    out = with_bd_rates(test, [("anchors/a/report.json", anchor)])
    assert test.bd_rates == [] and len(out.bd_rates) == 1
    assert out.bd_rates[0].anchor == "anchor" and out.bd_rates[0].anchor_report == "anchors/a/report.json"
    assert math.isclose(out.bd_rates[0].metrics[0].mean_percent, -10.0)
