"""Many reports → one cross-proponent table (and its CSV, Markdown and HTML page with plots).

A row per proponent × rate point (`row == "rate"`, the standard table's columns) and a summary row per
report (`row == "summary"`): largest-model and total parameters, worst-case decoder and encoder
kMAC/px, median CPU/GPU times over the rate points, peak GPU memory, precision, compliance verdict.

Reports are never mixed silently: a report whose schema major version this tool cannot read is refused
(InputError, exit 2), and a report made under different test conditions than the others is kept but
flagged in the `warning` column, which names each differing condition.

(Named `aggregation`, not `aggregate`: `profiler.aggregate` is the notebook function, and a submodule of
the same name would replace it on the package once imported.)
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from pathlib import Path

import pandas as pd

from .errors import InputError
from .render import table
from .report import Report, read_report

RATE_COLUMNS = table.COLUMNS
SUMMARY_COLUMNS = ["params_largest_model", "params_total", "kmac_px_decoder_worst", "kmac_px_encoder_max",
                   "median_enc_cpu_s", "median_dec_cpu_s", "median_enc_gpu_s", "median_dec_gpu_s",
                   "gpu_mem_peak_mib", "precision", "verdict"]
NUMERIC_RATE_COLUMNS = [c for c in RATE_COLUMNS if c not in ("proponent", "codec", "status", "precision_encoder",
                                                             "precision_decoder")]
INT_COLUMNS = ["params_encoder", "params_decoder", "params_largest_model", "params_total"]
META_COLUMNS = ["schema_version", "conditions", "warning", "report"]
# Condition fields that never make reports incomparable: where the conditions were read from.
IGNORED_CONDITIONS = {"source"}


def _none_if_nm(v):
    return None if table.is_not_measured(v) else v


def rate_frame(report: Report, path: str = "") -> pd.DataFrame:
    """The standard table of one report as a DataFrame; not-measured figures are NaN."""
    rows = [{k: _none_if_nm(v) for k, v in r.items()} for r in table.rows(report)]
    df = pd.DataFrame(rows, columns=RATE_COLUMNS)
    for c in NUMERIC_RATE_COLUMNS:   # NaN, not None, where not measured: numeric columns for notebooks
        df[c] = pd.to_numeric(df[c].astype(object).where(df[c].notna(), float("nan")))
    df.attrs["summary"] = {k: _none_if_nm(v) for k, v in table.summary(report).items()}
    df.attrs["verdict"] = table.compliance_view(report)[0]
    df.attrs["not_measured"] = table.not_measured_reasons(report)
    df.attrs["schema_version"] = report.schema_version
    df.attrs["path"] = path
    return df


def load_report(path: str | Path) -> pd.DataFrame:
    """Read one report.json into its standard table (one row per rate point).

    `df.attrs` holds the summary, the compliance verdict and the reasons for not-measured figures.
    """
    return rate_frame(read_report(path), str(path))


def find_reports(dirs: list[str | Path]) -> list[Path]:
    """Every report.json below the given folders (a report.json path is taken as is), sorted."""
    found: list[Path] = []
    for d in dirs:
        d = Path(d)
        if d.is_file() and d.suffix == ".json":
            found.append(d)
        elif d.is_dir():
            found.extend(sorted(d.rglob("report.json")))
        else:
            raise InputError(d, None, "no such report folder")
    if not found:
        raise InputError(", ".join(str(d) for d in dirs), None, "no report.json found below these folders")
    return sorted(dict.fromkeys(p.resolve() for p in found))


def comparable_conditions(conditions: dict) -> dict:
    """The test conditions as flat `dotted.key → value`, without fields that do not affect figures."""
    out = {}

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            key = prefix + k
            if key in IGNORED_CONDITIONS:
                continue
            if isinstance(v, dict):
                walk(v, key + ".")
            else:
                out[key] = json.dumps(v, sort_keys=True)
    walk(conditions, "")
    return out


def condition_warnings(reports: list[Report]) -> list[str]:
    """Per report: '' when its conditions equal the reference, else the differing conditions named.

    The reference is the set of conditions most reports share (the first report's on a tie).
    """
    flat = [comparable_conditions(r.conditions) for r in reports]
    keys = [json.dumps(f, sort_keys=True) for f in flat]
    common = Counter(keys).most_common()
    best = max(c for _, c in common)
    ref_key = next(k for k in keys if dict(common)[k] == best)
    ref = flat[keys.index(ref_key)]
    ref_version = Counter(r.schema_version for r in reports).most_common(1)[0][0]
    out = []
    for rep, f in zip(reports, flat):
        diffs = []
        for k in sorted(set(ref) | set(f)):
            if ref.get(k) != f.get(k):
                diffs.append(f"{k}={f.get(k, 'absent')} (others {ref.get(k, 'absent')})")
        msg = ("conditions differ: " + "; ".join(diffs)) if diffs else ""
        if rep.schema_version != ref_version:
            msg = "; ".join(m for m in (msg, f"schema {rep.schema_version} (others {ref_version})") if m)
        out.append(msg)
    return out


def _median(vals: list) -> float | None:
    vals = [v for v in vals if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(vals) if vals else None


def _max(vals: list) -> float | None:
    vals = [v for v in vals if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))]
    return max(vals) if vals else None


def summary_row(report: Report, rates: pd.DataFrame) -> dict:
    s = table.summary(report)
    ok = rates[rates["status"] == "ok"]
    prec = report.submission.get("precision", {})
    return {
        "proponent": report.submission["proponent"], "codec": report.submission["codec"], "row": "summary",
        **{k: _none_if_nm(s[k]) for k in table.SUMMARY_KEYS},
        "median_enc_cpu_s": _median(list(ok["enc_cpu_s"])), "median_dec_cpu_s": _median(list(ok["dec_cpu_s"])),
        "median_enc_gpu_s": _median(list(ok["enc_gpu_s"])), "median_dec_gpu_s": _median(list(ok["dec_gpu_s"])),
        "gpu_mem_peak_mib": _max(list(ok["gpu_mem_enc_mib"]) + list(ok["gpu_mem_dec_mib"])),
        "precision": f"enc {prec.get('encoder', '?')} / dec {prec.get('decoder', '?')}",
        "verdict": table.compliance_view(report)[0],
    }


def aggregate_reports(reports: list[Report], paths: list[str]) -> pd.DataFrame:
    warnings = condition_warnings(reports)
    frames = []
    for rep, path, warn in zip(reports, paths, warnings):
        rates = rate_frame(rep, path)
        meta = {"schema_version": rep.schema_version, "conditions": rep.conditions.get("name"),
                "warning": warn, "report": path}
        rate_rows = rates.assign(row="rate", **meta)
        frames.append(rate_rows)
        frames.append(pd.DataFrame([{**summary_row(rep, rates), **meta}]))
    df = pd.concat(frames, ignore_index=True)
    cols = ["proponent", "codec", "row"] + [c for c in RATE_COLUMNS if c not in ("proponent", "codec")]
    cols += SUMMARY_COLUMNS + META_COLUMNS
    for c in cols:
        if c not in df.columns:
            df[c] = None
    df = df[cols]
    for c in SUMMARY_COLUMNS:
        if c not in ("precision", "verdict") + tuple(INT_COLUMNS):
            df[c] = pd.to_numeric(df[c].astype(object).where(df[c].notna(), float("nan")))
    # Counts stay integers next to missing values (pandas' nullable Int64), so 2500 is not shown as 2500.0.
    for c in INT_COLUMNS:
        df[c] = pd.array([None if _num(v) is None else int(v) for v in df[c]], dtype="Int64")
    df.attrs["warnings"] = {p: w for p, w in zip(paths, warnings) if w}
    return df


def aggregate(paths: list[str | Path]) -> pd.DataFrame:
    """Read the reports (files, or folders searched for report.json) into one cross-proponent table.

    Raises InputError for a report of a schema major version this tool cannot read.
    """
    files = find_reports(list(paths))
    reports = [read_report(p) for p in files]
    return aggregate_reports(reports, [str(p) for p in files])


# -- written outputs --------------------------------------------------------------------------------

METRIC_COLUMNS = {"rate": [c for c in RATE_COLUMNS if c not in ("proponent", "codec", "target_bpp", "status")],
                  "summary": SUMMARY_COLUMNS}


def display_frame(df: pd.DataFrame) -> pd.DataFrame:
    """For the files: 'not measured' where a figure of that row kind is missing, '' where it does not apply."""
    out = df.astype(object).where(df.notna(), None)
    for kind, cols in METRIC_COLUMNS.items():
        mask = out["row"] == kind
        for c in cols:
            out.loc[mask & out[c].isna(), c] = table.NOT_MEASURED
    return out.where(out.notna(), "")


def to_csv(df: pd.DataFrame) -> str:
    return display_frame(df).to_csv(index=False, lineterminator="\n")


def _md_cell(v, c: str) -> str:
    return table.fmt(v, c).replace("|", "\\|") if v != "" else ""


def to_markdown(df: pd.DataFrame) -> str:
    disp = display_frame(df)
    lines = ["# JPEG AI complexity — all proponents", ""]
    warns = df.attrs.get("warnings") or {}
    for path, w in warns.items():
        lines.append(f"> **Warning** — `{path}`: {w}")
    if warns:
        lines.append("")
    for kind, title, cols in (("summary", "Summary per proponent", ["proponent", "codec"] + SUMMARY_COLUMNS + ["warning"]),
                              ("rate", "Per rate point", ["proponent", "codec"] + [c for c in RATE_COLUMNS if c not in
                                                                                   ("proponent", "codec")] + ["warning"])):
        lines += [f"## {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for _, r in disp[disp["row"] == kind].iterrows():
            lines.append("| " + " | ".join(_md_cell(r[c], c) for c in cols) + " |")
        lines.append("")
    return "\n".join(lines)


def _label(r) -> str:
    return f"{r['proponent']} / {r['codec']}"


def aggregate_plots(df: pd.DataFrame) -> list[tuple[str, str]]:
    from .render import plots

    rates = df[(df["row"] == "rate") & (df["status"] == "ok")]
    summ = df[df["row"] == "summary"]
    by = {}
    for _, r in rates.iterrows():
        by.setdefault(_label(r), []).append(r)

    def pts(xcol, ycol):
        return {k: [(_num(r[xcol]), _num(r[ycol])) for r in v] for k, v in by.items()}

    out = [(plots.lines(pts("target_bpp", "kmac_px_decoder"), "target bpp", "decoder kMAC/px",
                        "decoder kMAC/px vs rate"), "decoder kMAC/px (max over images) at each rate point"),
           (plots.scatter(pts("dec_cpu_s", "kmac_px_decoder"), "decode time, CPU (s, median)", "decoder kMAC/px",
                          "decoder kMAC/px vs decode time"), "each point is one rate point of one proponent")]
    labels = [_label(r) for _, r in summ.iterrows()]
    out.append((plots.grouped_bars(labels, {"largest model": [_num(v) for v in summ["params_largest_model"]],
                                            "total over rate points": [_num(v) for v in summ["params_total"]]},
                                   "parameters", "parameters per proponent"),
                "largest model (encoder ∪ decoder) and total over all rate points"))
    return out


def _num(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def to_html(df: pd.DataFrame) -> str:
    from html import escape

    from .render.html import CSS, SCRIPT, figure, verdict_class

    disp = display_frame(df)
    parts = ["<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
             "<title>JPEG AI complexity — all proponents</title>", f"<style>{CSS}.warn{{background:#fff3cd;"
             "border:1px solid #e0b000;padding:.5em;margin:.5em 0}} tr.flagged td{{background:#fff8e1}}</style>",
             "</head><body><h1>JPEG AI complexity — all proponents</h1>"]
    for path, w in (df.attrs.get("warnings") or {}).items():
        parts.append(f"<div class=warn><b>Warning</b> — <code>{escape(path)}</code>: {escape(w)}</div>")

    def tbl(kind, cols):
        out = ["<div style='overflow-x:auto'><table><tr>" + "".join(f"<th>{escape(c)}</th>" for c in cols) + "</tr>"]
        for _, r in disp[disp["row"] == kind].iterrows():
            cells = []
            for c in cols:
                v = r[c]
                if c == "verdict":
                    cells.append(f"<td><span class='verdict {verdict_class(str(v))}'>{escape(str(v))}</span></td>")
                elif table.is_not_measured(v):
                    cells.append("<td class=nm>n/m</td>")
                else:
                    num = isinstance(v, (int, float)) and not isinstance(v, bool)
                    cells.append(f"<td{' class=num' if num else ''}>{escape(table.fmt(v, c))}</td>")
            out.append(f"<tr{' class=flagged' if r['warning'] else ''}>" + "".join(cells) + "</tr>")
        return "\n".join(out + ["</table></div>"])

    parts.append("<h2>Summary per proponent</h2>")
    parts.append(tbl("summary", ["proponent", "codec"] + SUMMARY_COLUMNS + ["conditions", "warning"]))
    parts.append("<h2>Plots</h2><div class=plots>" + "".join(figure(u, c) for u, c in aggregate_plots(df)) + "</div>")
    parts.append("<h2>Per rate point</h2>")
    parts.append(tbl("rate", ["proponent", "codec"] + [c for c in RATE_COLUMNS if c not in ("proponent", "codec")]
                     + ["warning"]))
    parts.append(f"<p class=small>{len(df[df['row'] == 'summary'])} reports: "
                 + ", ".join(escape(p) for p in df[df["row"] == "summary"]["report"]) + "</p>")
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"


def write_outputs(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in (("aggregate.csv", to_csv(df)), ("aggregate.md", to_markdown(df)), ("aggregate.html", to_html(df))):
        (out_dir / name).write_text(text, encoding="utf-8")
        paths.append(out_dir / name)
    return paths


def main(argv: list[str]) -> int:
    """`jpegai-profile aggregate REPORTS_DIR... [--out DIR]`."""
    import argparse
    import sys

    from rich.console import Console

    from .cli import _Parser

    p = _Parser(prog="jpegai-profile aggregate",
                description="One cross-proponent table from every report.json below the given folders.")
    p.add_argument("dirs", nargs="+", type=Path, help="folders searched for report.json (or report files)")
    p.add_argument("--out", type=Path, default=Path("reports") / "aggregate",
                   help="output folder (default: reports/aggregate/)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args: argparse.Namespace = p.parse_args(argv)
    df = aggregate(args.dirs)
    written = write_outputs(df, args.out)
    console = Console() if sys.stdout.isatty() else Console(width=200)
    summ = df[df["row"] == "summary"]
    from rich.table import Table
    t = Table(title="JPEG AI complexity — all proponents")
    cols = ["proponent", "codec", "params_largest_model", "params_total", "kmac_px_decoder_worst",
            "kmac_px_encoder_max", "median_dec_cpu_s", "verdict"]
    for c in cols:
        t.add_column(c)
    for _, r in display_frame(summ).iterrows():
        t.add_row(*[table.fmt(r[c], c) for c in cols])
    console.print(t)
    for path, w in (df.attrs.get("warnings") or {}).items():
        console.print(f"[yellow]warning[/yellow] {path}: {w}")
    console.print("wrote " + ", ".join(str(p) for p in written))
    return 0
