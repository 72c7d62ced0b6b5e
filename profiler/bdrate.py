"""BD-rates of a submission against an anchor: per picture and metric, the mean over pictures, AVG BD.

A pure reading of two reports (the submission's and an anchor's, same schema): nothing is measured here.
Each picture's rate–quality curve is its (bpp, metric) points over the report's rate points that were
measured; the BD-rate of the submission's curve against the anchor's is `profiler.quality.bd_rate`
(`bjontegaard` package, pchip, as the JPEG AI scripts), negative when the submission needs fewer bits.

- Not computed, with the reason, where a curve has fewer than 4 points, is not strictly monotonic, holds
  an undefined value (a picture too small for MS-SSIM), or the two curves share no quality range.
- The mean over pictures is taken over the pictures where it was computed (their number is stated); a
  metric none of whose pictures has a BD-rate has no mean.
- AVG BD is the mean over the metrics of `AVG_METRICS` (the JPEG AI objective set) that have a mean;
  the metrics that entered are listed, so a partial average is never mistaken for the full one.
- How a metric enters the BD-rate (`BD_FORM`): the SSIM family in dB, −10·log10(1 − v) (as the JPEG AI
  reports show MS-SSIM), NLPD negated (lower is better), the others as they are.
- The rate range: both curves' bpp ranges and their overlap, per picture. pchip integrates over the
  shared *quality* interval, so where an anchor cannot reach the lowest rates (JPEG below 0.25 bpp) the
  BD-rate covers only the rates both reach; the range says which.
"""

from __future__ import annotations

import math
from pathlib import Path

from .model.report import BdComparison, BdMetric, BdValue, Report
from .quality import bd_rate

# The JPEG AI objective metric set, averaged into AVG BD (report keys in Picture.quality).
AVG_METRICS = ("ms_ssim_y", "iw_ssim", "vmaf", "vifp", "psnr_hvs_m", "nlpd", "fsim")
# Every metric a BD-rate is computed for, in table order (PSNR figures are shown, not averaged).
BD_METRICS = ("psnr_y", "psnr_u", "psnr_v", "psnr_rgb") + AVG_METRICS
# How the metric's value enters the BD-rate.
# (The older RGB `ms_ssim` key enters linearly, as the interoperability rule has always used it.)
BD_FORM = {"ms_ssim_y": "dB: -10·log10(1 - v)", "iw_ssim": "dB: -10·log10(1 - v)",
           "nlpd": "negated: -v (lower is better)"}


def bd_value(metric: str, v: float | None) -> float | None:
    """The metric's value as it enters the BD-rate (`BD_FORM`); None where it is not defined."""
    if v is None or not math.isfinite(v):
        return None if v is None or math.isnan(v) else v
    form = BD_FORM.get(metric, "")
    if form.startswith("dB"):
        return float("inf") if v >= 1 else -10 * math.log10(1 - v)
    if form.startswith("negated"):
        return -v
    return v


def raw_points(report: Report, metric: str) -> dict[str, list[tuple[float, float | None]]]:
    """Picture name → [(bpp, the metric's value as measured)] over the report's measured rate points."""
    out: dict[str, list[tuple[float, float | None]]] = {}
    for r in sorted(report.ok_rates(), key=lambda r: r.target_bpp):
        for pic in r.images:
            raw = pic.psnr_rgb if metric == "psnr_rgb" else pic.quality.get(metric)
            out.setdefault(pic.name, []).append((pic.bpp, raw))
    return out


def curves(report: Report, metric: str) -> dict[str, list[tuple[float, float | None]]]:
    """Picture name → [(bpp, value as it enters the BD-rate)] over the report's measured rate points."""
    return {name: [(b, bd_value(metric, v)) for b, v in pts] for name, pts in raw_points(report, metric).items()}


def mean_curve(points: dict[str, list[tuple[float, float | None]]]) -> list[tuple[float, float | None]]:
    """The mean over pictures at each rate point (k-th point of every picture): mean bpp, mean value
    (None where a picture's value is missing)."""
    n = min((len(p) for p in points.values()), default=0)
    out = []
    for k in range(n):
        bpps = [p[k][0] for p in points.values()]
        vals = [p[k][1] for p in points.values()]
        finite = all(v is not None and math.isfinite(v) for v in vals)
        out.append((sum(bpps) / len(bpps), sum(vals) / len(vals) if finite else None))
    return out


def _range(points) -> tuple[float, float] | None:
    rates = [p[0] for p in points]
    return (min(rates), max(rates)) if rates else None


def picture_bd(anchor: list[tuple[float, float | None]], test: list[tuple[float, float | None]]) -> BdValue:
    """BD-rate of one picture's test curve against its anchor curve, with the rate ranges."""
    ra, rt = _range(anchor), _range(test)
    overlap = None
    if ra and rt and max(ra[0], rt[0]) <= min(ra[1], rt[1]):
        overlap = (max(ra[0], rt[0]), min(ra[1], rt[1]))
    kw = {"anchor_bpp": ra, "test_bpp": rt, "overlap_bpp": overlap}
    if any(v is None for _, v in anchor) or any(v is None for _, v in test):
        return BdValue(percent=None, reason="the metric is not defined at some rate point (picture too small, "
                                            "or not measured)", **kw)
    bd = bd_rate([p[0] for p in anchor], [p[1] for p in anchor], [p[0] for p in test], [p[1] for p in test])
    return BdValue(percent=bd.percent, reason=bd.reason, **kw)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def compare(test: Report, anchor: Report, anchor_path: str = "",
            metrics: tuple[str, ...] = BD_METRICS) -> BdComparison:
    """BD-rates of `test` against `anchor`: per metric and picture, the mean over pictures, AVG BD."""
    rows = []
    for metric in metrics:
        ca, ct = curves(anchor, metric), curves(test, metric)
        pictures = {name: picture_bd(ca[name], ct[name]) for name in ct if name in ca}
        got = [v.percent for v in pictures.values() if v.percent is not None]
        reason = ""
        if not pictures:
            reason = "no picture in common with the anchor"
        elif not got:
            reason = "; ".join(sorted({v.reason for v in pictures.values()}))
        rows.append(BdMetric(metric=metric, form=BD_FORM.get(metric, "as is"), pictures=pictures,
                             mean_percent=_mean(got), pictures_used=len(got), reason=reason))
    entered = [m.metric for m in rows if m.metric in AVG_METRICS and m.mean_percent is not None]
    avg = _mean([m.mean_percent for m in rows if m.metric in entered])
    missing = [m for m in AVG_METRICS if m in metrics and m not in entered]
    info = anchor.anchor
    return BdComparison(anchor=anchor.submission.codec, anchor_report=anchor_path,
                        substitute_for=info.substitute_for if info else "",
                        metrics=rows, avg_percent=avg, avg_metrics=entered,
                        avg_note=("" if not missing else "AVG BD without " + ", ".join(missing) +
                                  " (no BD-rate for them)"),
                        anchor_points={m: raw_points(anchor, m) for m in metrics})


def with_bd_rates(test: Report, anchors: list[tuple[str, Report]]) -> Report:
    """A copy of `test` holding its BD-rates against each anchor (path, report); the input is unchanged."""
    return test.model_copy(update={"bd_rates": [compare(test, a, path) for path, a in anchors]})


def find_anchor_reports(directory: Path) -> list[Path]:
    """Every report.json below `directory` (the layout `jpegai-profile anchors` writes)."""
    return sorted(directory.rglob("report.json"))
