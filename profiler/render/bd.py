"""BD-rates against anchors and RD plots, for the console, Markdown and HTML views.

Reads `Report.bd_rates` (profiler/bdrate.py filled it, `profile --anchors`) and the report's own pictures;
computes nothing new but the mean curves drawn in the RD plots (profiler.bdrate.mean_curve).
"""

from __future__ import annotations

from ..bdrate import BD_METRICS, mean_curve, raw_points
from ..model.report import BdComparison, Report
from . import plots
from .escape import html as escape, markdown_cell, markdown_text, markup

NAMES = {"psnr_y": "PSNR-Y", "psnr_u": "PSNR-U", "psnr_v": "PSNR-V", "psnr_rgb": "PSNR-RGB",
         "ms_ssim_y": "MS-SSIM", "iw_ssim": "IW-SSIM", "vmaf": "VMAF", "vifp": "VIFP", "psnr_hvs_m": "PSNR-HVS-M",
         "nlpd": "NLPD", "fsim": "FSIM", "ms_ssim": "MS-SSIM (RGB)"}
AVG = "AVG BD"


def pct(v: float | None) -> str:
    return "n/c" if v is None else f"{v:+.2f} %"


def columns(report: Report) -> list[str]:
    """The metrics shown: those in the comparisons, in BD_METRICS order."""
    seen = {m.metric for c in report.bd_rates for m in c.metrics}
    return [m for m in BD_METRICS if m in seen]


def rows(report: Report) -> list[dict]:
    """One row per anchor: the mean BD-rate over pictures of each metric, then AVG BD. `used` holds, per
    metric, (pictures the mean is over, pictures compared)."""
    out = []
    for c in report.bd_rates:
        row = {"anchor": _anchor_label(c), "used": {}}
        for m in c.metrics:
            row[m.metric] = m.mean_percent
            row["used"][m.metric] = (m.pictures_used, len(m.pictures))
        row[AVG] = c.avg_percent
        out.append(row)
    return out


def cell(row: dict, metric: str) -> str:
    """A mean BD-rate as the tables show it; a mean over only some of the pictures says over how many
    (`+9.27 % (3/4)`: the other pictures' reasons are listed below the table)."""
    used, of = row.get("used", {}).get(metric, (0, 0))
    v = row.get(metric)
    return pct(v) + (f" ({used}/{of})" if v is not None and used < of else "")


def _anchor_label(c: BdComparison) -> str:
    return c.anchor + (f" (substitute for {c.substitute_for})" if c.substitute_for else "")


def not_computed(report: Report) -> list[str]:
    """Why a metric's mean is missing, or pictures left out, one line each."""
    lines = []
    for c in report.bd_rates:
        for m in c.metrics:
            if m.mean_percent is None:
                lines.append(f"{c.anchor} {NAMES.get(m.metric, m.metric)}: {m.reason}")
            else:
                left = {n: v.reason for n, v in m.pictures.items() if v.percent is None}
                for n, why in left.items():
                    lines.append(f"{c.anchor} {NAMES.get(m.metric, m.metric)} {n}: {why}")
        if c.avg_note:
            lines.append(f"{c.anchor}: {c.avg_note}")
    return lines


def rate_ranges(report: Report) -> list[str]:
    """Where an anchor's rates do not cover the submission's: the rates both reach (first metric, per picture)."""
    lines = []
    for c in report.bd_rates:
        first = next((m for m in c.metrics if m.pictures), None)
        if first is None:
            continue
        for name, v in first.pictures.items():
            if v.anchor_bpp and v.test_bpp and v.overlap_bpp and (v.anchor_bpp[0] > v.test_bpp[0] * 1.0001 or
                                                                  v.anchor_bpp[1] < v.test_bpp[1] / 1.0001):
                lines.append(f"{c.anchor} reaches {v.anchor_bpp[0]:.3f}–{v.anchor_bpp[1]:.3f} bpp on {name}: the "
                             f"BD-rates cover {v.overlap_bpp[0]:.3f}–{v.overlap_bpp[1]:.3f} bpp")
    return lines


FORM_NOTE = ("BD-rate: bjontegaard pchip (as the JPEG AI scripts), negative = fewer bits than the anchor at the "
             "same quality; mean over pictures ((n/N): over n of the N pictures, the others not computed); AVG BD = mean over MS-SSIM, IW-SSIM, VMAF, VIFP, PSNR-HVS-M, "
             "NLPD, FSIM. MS-SSIM and IW-SSIM enter in dB (−10·log10(1 − v)), NLPD negated; n/c = not computed")


def render_console(report: Report, console) -> None:
    if not report.bd_rates:
        return
    from rich.table import Table

    cols = columns(report)
    t = Table(title="BD-rate against the anchors (mean over pictures)")
    t.add_column("anchor")
    for c in cols + [AVG]:
        t.add_column(NAMES.get(c, c), justify="right")
    for row in rows(report):
        t.add_row(markup(row["anchor"]), *[cell(row, c) for c in cols + [AVG]])
    console.print(t)
    console.print(markup(FORM_NOTE), highlight=False)
    for line in rate_ranges(report) + not_computed(report):
        console.print(markup(line), highlight=False)


def markdown_lines(report: Report) -> list[str]:
    if not report.bd_rates:
        return []
    cols = columns(report)
    lines = ["", "## BD-rate against the anchors", "",
             "| anchor | " + " | ".join(NAMES.get(c, c) for c in cols) + f" | {AVG} |",
             "|" + "---|" * (len(cols) + 2)]
    for row in rows(report):
        lines.append(f"| {markdown_cell(row['anchor'])} | " + " | ".join(cell(row, c) for c in cols + [AVG]) + " |")
    lines += ["", markdown_text(FORM_NOTE) + "."]
    lines += [f"- {markdown_text(x)}" for x in rate_ranges(report) + not_computed(report)]
    return lines


def html_section(report: Report) -> str:
    """The BD table (per anchor, metric and picture) and the RD plots, or '' when there is no comparison."""
    if not report.bd_rates:
        return ""
    cols = columns(report)
    parts = ["<h2 id=bd-rates>BD-rate against the anchors</h2>",
             f"<p class=small>{escape(FORM_NOTE)}.</p>",
             "<table class=bd><tr><th>anchor</th>" + "".join(f"<th>{escape(NAMES.get(c, c))}</th>" for c in cols) +
             f"<th>{AVG}</th></tr>"]
    for row in rows(report):
        parts.append(f"<tr><td>{escape(row['anchor'])}</td>" +
                     "".join(f"<td class=num>{escape(cell(row, c))}</td>" for c in cols + [AVG]) + "</tr>")
    parts.append("</table>")
    for c in report.bd_rates:
        pictures = sorted({n for m in c.metrics for n in m.pictures})
        parts.append(f"<h3>Per picture against {escape(_anchor_label(c))}</h3><table class=bd><tr><th>picture</th>" +
                     "".join(f"<th>{escape(NAMES.get(m.metric, m.metric))}</th>" for m in c.metrics) + "</tr>")
        for n in pictures:
            cells = []
            for m in c.metrics:
                v = m.pictures.get(n)
                title = f" title='{escape(v.reason)}'" if v is not None and v.reason else ""
                cells.append(f"<td class=num{title}>{escape(pct(v.percent if v else None))}</td>")
            parts.append(f"<tr><td>{escape(n)}</td>{''.join(cells)}</tr>")
        parts.append("</table>")
    notes = rate_ranges(report) + not_computed(report)
    if notes:
        parts.append("<ul class=small>" + "".join(f"<li>{escape(x)}</li>" for x in notes) + "</ul>")
    parts.append("<h3>Rate–distortion curves</h3><div class=plots id=rd-plots>" + "".join(rd_plots(report)) + "</div>")
    return "\n".join(parts)


def rd_plots(report: Report) -> list[str]:
    """Per metric: the mean curve over pictures, and each picture's curve, submission against the anchors."""
    figs = []
    me = report.submission.codec
    for metric in columns(report):
        ours = raw_points(report, metric)
        theirs = {c.anchor: c.anchor_points.get(metric, {}) for c in report.bd_rates}
        name = NAMES.get(metric, metric)
        mean = {me: mean_curve(ours), **{a: mean_curve(p) for a, p in theirs.items()}}
        figs.append(_figure(plots.lines(mean, "bpp", name, f"{name}: mean over pictures"),
                            f"{name} against bpp, mean over the pictures at each rate point"))
        per = {f"{me} · {n}": pts for n, pts in ours.items()}
        for a, p in theirs.items():
            per.update({f"{a} · {n}": pts for n, pts in p.items()})
        figs.append(_figure(plots.lines(per, "bpp", name, f"{name}: per picture"),
                            f"{name} against bpp, each picture"))
    return figs


def _figure(uri: str, caption: str) -> str:
    return (f'<figure><img class="plot rd" alt="{escape(caption)}" src="{uri}">'
            f'<figcaption class="small">{escape(caption)}</figcaption></figure>')
