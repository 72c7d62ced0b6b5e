"""Many reports → one cross-proponent table (and its CSV, Markdown and HTML page with plots).

A row per proponent × rate point (`row == "rate"`, the standard table's columns) and a summary row per
report (`row == "summary"`): largest-model and total parameters, worst-case decoder and encoder
kMAC/px, median CPU/GPU times over the rate points, peak GPU memory, precision, compliance verdict.
Compressed-domain tasks, where reports hold any, are their own table (`df.attrs["tasks"]`, a section of
aggregate.md/.html and aggregate_tasks.csv): task × rate point × anchor, as render/tasks_table.py.

Reports are never mixed silently: a report whose schema major version this tool cannot read is refused
(InputError, exit 2), and a report made under different test conditions than the others is kept but
flagged in the `warning` column, which names each differing condition. Each rate point is also compared on the
machine it was timed on (`derive.timing_machine`: CPU model, torch build, torch threads; its own host
where the report records one, else the report's environment) against what most timed rate points of all
reports ran on: a row measured elsewhere is flagged in `warning`, naming the difference, and so is its
report's summary row. A report of a run that did not
finish is flagged the same way (`complete` false, the missing rate points named in `warning`), or left
out with `complete_only`. A malformed report is one InputError naming the file, never a traceback.

Every figure comes from profiler/derive.py through the standard table (render/table.py); the command
line (arguments, printing) is profiler/cli/aggregate.py.

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

from . import derive, performance
from .errors import InputError
from .model.io import read_report
from .model.report import Report
from .render import table, tasks_table
from .render.escape import csv_cell, html as escape, markdown_cell, markdown_code, markdown_text

RATE_COLUMNS = table.COLUMNS
SUMMARY_COLUMNS = ["params_largest_model", "params_total", "kmac_px_decoder_worst", "kmac_px_encoder_max",
                   "median_enc_cpu_s", "median_dec_cpu_s", "median_enc_gpu_s", "median_dec_gpu_s",
                   "gpu_mem_peak_mib", "precision", "verdict"]
NUMERIC_RATE_COLUMNS = [c for c in RATE_COLUMNS if c not in ("proponent", "codec", "status", "precision_encoder",
                                                             "precision_decoder")]
INT_COLUMNS = ["params_encoder", "params_decoder", "params_largest_model", "params_total"]
META_COLUMNS = ["schema_version", "conditions", "complete", "missing_rates", "anchor", "warning", "report"]
# An anchor's report (`jpegai-profile anchors`) is a row of the table for its rates and quality; its
# complexity columns are *not applicable* (never 0 kMAC/px in a plot, never "not measured"), its verdict
# `anchor`.
NOT_APPLICABLE = "not applicable"
ANCHOR_NA_RATE = [c for c in RATE_COLUMNS if c not in ("proponent", "codec", "target_bpp", "status", "bpp",
                                                        "psnr_rgb", "precision_encoder", "precision_decoder")]
ANCHOR_NA_SUMMARY = [c for c in SUMMARY_COLUMNS if c not in ("precision", "verdict")]
ANCHOR_VERDICT = "anchor"
# Condition fields that never make reports incomparable: where the conditions were read from.
IGNORED_CONDITIONS = {"source"}
# Condition groups that do not apply to an anchor's report (its complexity is not applicable).
ANCHOR_IGNORED = {"counting", "timing", "worker", "rules"}


def _none_if_nm(v):
    return None if table.is_not_measured(v) else float(v) if isinstance(v, table.AtLeast) else v


def _rates_text(rates: list[float]) -> str:
    return " ".join(f"{t:g}" for t in rates)


def rate_frame(report: Report, path: str = "", figures: tuple[list[dict], dict] | None = None) -> pd.DataFrame:
    """The standard table of one report as a DataFrame; not-measured figures are NaN.

    `attrs`: the summary (over the rate points measured), the verdict, why figures are missing, and
    whether the run finished (`complete`; `missing_rates`: planned rate points it has no result for).
    """
    table_rows, table_summary = figures or (table.rows(report), table.summary(report))
    rows = [{k: _none_if_nm(v) for k, v in r.items()} for r in table_rows]
    df = pd.DataFrame(rows, columns=RATE_COLUMNS)
    for c in NUMERIC_RATE_COLUMNS:   # NaN, not None, where not measured: numeric columns for notebooks
        df[c] = pd.to_numeric(df[c].astype(object).where(df[c].notna(), float("nan")))
    df.attrs["summary"] = {k: _none_if_nm(v) for k, v in table_summary.items()}
    df.attrs["summary_count_complete"] = table.summary_counts_complete(report)
    df.attrs["verdict"] = table.compliance_view(report)[0]
    df.attrs["not_measured"] = table.not_measured_reasons(report)
    df.attrs["schema_version"] = report.schema_version
    df.attrs["complete"] = derive.is_complete(report)
    df.attrs["missing_rates"] = derive.missing_rates(report)
    df.attrs["planned_rates"] = derive.planned_rates(report)
    df.attrs["unfinished"] = table.unfinished(report)
    df.attrs["path"] = path
    return df


def read(path: str | Path) -> Report:
    """One report file → Report; anything malformed is one InputError naming the file."""
    return _read(path)[0]


def _read(path: str | Path) -> tuple[Report, tuple[list[dict], dict]]:
    """`read`, and the report's standard table and summary (made to check it; kept, not made again)."""
    try:
        report = read_report(path)
        # what the schema lets through but the figures cannot be made from (a picture without counts)
        figures = table.rows(report), table.summary(report)
    except InputError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, ZeroDivisionError) as exc:
        raise InputError(path, None, f"not a readable report ({type(exc).__name__}: {exc})") from None
    return report, figures


def load_report(path: str | Path) -> pd.DataFrame:
    """Read one report.json into its standard table (one row per rate point).

    `df.attrs` holds the summary, the compliance verdict, the reasons for not-measured figures, and
    `complete` / `missing_rates` (a run that did not finish: its summary covers only what was measured).
    """
    return rate_frame(read(path), str(path))


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


def unfinished_warning(report: Report) -> str:
    """'' for a finished run; else the warning naming the planned rate points never measured."""
    if derive.is_complete(report):
        return ""
    missing = derive.missing_rates(report)
    text = f"run not finished (state {report.run.state})"
    if missing:
        text += f": rate points {table.rates_text(missing)} not measured"
    return text + "; summary over the rate points measured only"


def condition_warnings(reports: list[Report]) -> list[str]:
    """Per report: '' when its conditions equal the reference, else the differing conditions named.

    The reference is the set of conditions most reports share (the first report's on a tie). An anchor's
    report (`jpegai-profile anchors`) is compared on what its compression figures depend on only (rates,
    pictures): its complexity conditions do not apply.
    """
    flat = [comparable_conditions(r.conditions.model_dump(mode="json")) for r in reports]
    measured = [f for r, f in zip(reports, flat) if r.anchor is None] or flat
    keys = [json.dumps(f, sort_keys=True) for f in measured]
    common = Counter(keys).most_common()
    best = max(c for _, c in common)
    ref_key = next(k for k in keys if dict(common)[k] == best)
    ref = measured[keys.index(ref_key)]
    ref_version = Counter(r.schema_version for r in reports).most_common(1)[0][0]
    out = []
    for rep, f in zip(reports, flat):
        if rep.anchor is not None:
            f = {k: v for k, v in f.items() if k.split(".")[0] not in ANCHOR_IGNORED}
            f.update({k: v for k, v in ref.items() if k.split(".")[0] in ANCHOR_IGNORED})
        diffs = []
        for k in sorted(set(ref) | set(f)):
            if ref.get(k) != f.get(k):
                diffs.append(f"{k}={f.get(k, 'absent')} (others {ref.get(k, 'absent')})")
        msg = ("conditions differ: " + "; ".join(diffs)) if diffs else ""
        if rep.schema_version != ref_version:
            msg = "; ".join(m for m in (msg, f"schema {rep.schema_version} (others {ref_version})") if m)
        out.append("; ".join(m for m in (unfinished_warning(rep), msg) if m))
    return out


ENVIRONMENT_LABELS = {"cpu_model": "CPU model", "torch_build": "torch build", "threads": "threads"}


def environment_warnings(reports: list[Report]) -> list[dict[int, str]]:
    """Per report, rate index → why that rate point's timings were measured on another machine than most
    ('' or absent when not): each of CPU model, torch build and threads (derive.timing_machine) whose
    value differs from the one most timed rate points of all reports have (the first seen on a tie).
    Only rate points that were timed (status ok) of reports that are not an anchor's are compared; a value
    a report does not record (an older report) is not compared."""
    timed = [(i, r, derive.timing_machine(rep, r)) for i, rep in enumerate(reports) if rep.anchor is None
             for r in rep.rates if r.ok]
    ref = {}
    for key in ENVIRONMENT_LABELS:
        values = [m[key] for _, _, m in timed if m[key] is not None]
        if values:
            counts = Counter(values)
            best = max(counts.values())
            ref[key] = next(v for v in values if counts[v] == best)
    out: list[dict[int, str]] = [{} for _ in reports]
    for i, r, m in timed:
        diffs = [f"{label} {m[k]} (others {ref[k]})" for k, label in ENVIRONMENT_LABELS.items()
                 if k in ref and m[k] is not None and m[k] != ref[k]]
        if diffs:
            out[i][r.index] = "measured on another machine: " + ", ".join(diffs)
    return out


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _median(vals: list) -> float | None:
    vals = [v for v in vals if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(vals) if vals else None


def _max(vals: list) -> float | None:
    vals = [v for v in vals if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))]
    return max(vals) if vals else None


def summary_row(report: Report, rates: list[dict], s: dict | None = None) -> dict:
    """The summary row of one report; `rates` are its rate rows (column → value, None where not measured)."""
    s = table.summary(report) if s is None else s
    ok = [r for r in rates if r["status"] == "ok"]
    prec = report.submission.precision

    def col(c: str) -> list:
        return [r[c] for r in ok]

    return {
        "proponent": report.submission.proponent, "codec": report.submission.codec, "row": "summary",
        "count_complete": table.summary_counts_complete(report),
        **{k: _none_if_nm(s[k]) for k in table.SUMMARY_KEYS},
        "median_enc_cpu_s": _median(col("enc_cpu_s")), "median_dec_cpu_s": _median(col("dec_cpu_s")),
        "median_enc_gpu_s": _median(col("enc_gpu_s")), "median_dec_gpu_s": _median(col("dec_gpu_s")),
        "gpu_mem_peak_mib": _max(col("gpu_mem_enc_mib") + col("gpu_mem_dec_mib")),
        "precision": f"enc {prec.get('encoder', '?')} / dec {prec.get('decoder', '?')}",
        "verdict": table.compliance_view(report)[0],
    }


def aggregate_reports(reports: list[Report], paths: list[str],
                      figures: list[tuple[list[dict], dict]] | None = None) -> pd.DataFrame:
    """One frame of every report's rate rows and summary row. `figures`: each report's standard table and
    summary where already made (`_read`). The rows are collected as dicts and made one frame at the end
    (a frame per report costs more than its figures)."""
    machines = environment_warnings(reports)
    # per report: its conditions against the others', its own rate points timed on different machines
    base = [_join(w, "; ".join(derive.mixed_hosts(rep)) if rep.anchor is None else "")
            for rep, w in zip(reports, condition_warnings(reports))]
    warnings = []
    for rep, b, machine in zip(reports, base, machines):
        flagged = [r for r in rep.rates if r.index in machine]
        warnings.append(_join(b, *[f"rate point {r.target_bpp:g} bpp {machine[r.index]}" for r in flagged]))
    rows = []
    for i, (rep, path, warn, b, machine) in enumerate(zip(reports, paths, warnings, base, machines)):
        table_rows, table_summary = figures[i] if figures is not None else (table.rows(rep), table.summary(rep))
        rates = [{c: _none_if_nm(r[c]) for c in RATE_COLUMNS} for r in table_rows]
        meta = {"schema_version": rep.schema_version, "conditions": rep.conditions.name,
                "complete": derive.is_complete(rep), "missing_rates": _rates_text(derive.missing_rates(rep)),
                "anchor": rep.anchor.substitute_for if rep.anchor is not None else "",
                "warning": warn, "report": path}
        summary = summary_row(rep, rates, table_summary)
        if rep.anchor is not None:     # an anchor's complexity does not apply: NaN, never "not measured"
            rates = [{**r, **{c: float("nan") for c in ANCHOR_NA_RATE if c in r}} for r in rates]
            summary.update({c: None for c in ANCHOR_NA_SUMMARY}, verdict=ANCHOR_VERDICT)
        # a rate row carries its own machine's flag (table.rows keeps the report's order of rate points)
        rows += [{**r, "row": "rate", **meta, "warning": _join(b, machine.get(rr.index, ""))}
                 for r, rr in zip(rates, rep.rates)]
        rows.append({**summary, **meta})
    cols = ["proponent", "codec", "row"] + [c for c in RATE_COLUMNS if c not in ("proponent", "codec")]
    cols += SUMMARY_COLUMNS + META_COLUMNS
    df = pd.DataFrame(rows, columns=cols)
    for c in NUMERIC_RATE_COLUMNS:   # NaN, not None, where not measured (as rate_frame)
        df[c] = pd.to_numeric(df[c].astype(object).where(df[c].notna(), float("nan")))
    for c in SUMMARY_COLUMNS:
        if c not in ("precision", "verdict") + tuple(INT_COLUMNS):
            df[c] = pd.to_numeric(df[c].astype(object).where(df[c].notna(), float("nan")))
    # Counts stay integers next to missing values (pandas' nullable Int64), so 2500 is not shown as 2500.0.
    for c in INT_COLUMNS:
        df[c] = pd.array([None if _num(v) is None else int(v) for v in df[c]], dtype="Int64")
    df.attrs["warnings"] = {p: w for p, w in zip(paths, warnings) if w}
    df.attrs["left_out"] = {}
    df.attrs["tasks"] = task_rows(reports, paths)
    df.attrs["performance"] = performance.rows(reports, paths)     # the complexity–performance table
    return df


# -- compressed-domain tasks ------------------------------------------------------------------------

TASK_COLUMNS = ["proponent", "codec"] + tasks_table.COLUMNS + ["complete", "error", "report"]


def task_rows(reports: list[Report], paths: list[str]) -> list[dict]:
    """The tasks table of every report (render/tasks_table.py), a row per task × rate point × anchor;
    lower bounds of incomplete counts stay `table.AtLeast`, figures not measured None."""
    return [{"proponent": rep.submission.proponent, "codec": rep.submission.codec, **row, "report": path}
            for rep, path in zip(reports, paths) for row in tasks_table.rows(rep)]


def tasks_csv(rows: list[dict]) -> str:
    """aggregate_tasks.csv: full precision, "not measured" where a figure is missing."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=TASK_COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: csv_cell(table.NOT_MEASURED if row[k] is None and k not in ("error", "complete") else
                                (float(row[k]) if "kmac" in k else int(row[k])) if isinstance(row[k], table.AtLeast)
                                else row[k]) for k in TASK_COLUMNS})
    return buf.getvalue()


def _task_text(row: dict, c: str) -> str:
    if c in ("proponent", "codec", "error", "report"):
        return str(row[c] or "")
    if c == "complete":
        return "" if row[c] is None else str(row[c])
    return tasks_table.fmt(row[c], c)


def aggregate(paths: list[str | Path], complete_only: bool = False) -> pd.DataFrame:
    """Read the reports (files, or folders searched for report.json) into one cross-proponent table.

    `complete_only` leaves out reports of runs that did not finish (`df.attrs["left_out"]`: path → why).
    Raises InputError for a malformed report or one of a schema major version this tool cannot read,
    and when `complete_only` leaves nothing.
    """
    files = find_reports(list(paths))
    read_in = [_read(p) for p in files]
    reports, figures = [r for r, _ in read_in], [f for _, f in read_in]
    left_out = {}
    if complete_only:
        kept = [(r, p, f) for r, p, f in zip(reports, files, figures) if derive.is_complete(r)]
        left_out = {str(p): unfinished_warning(r) for r, p in zip(reports, files) if not derive.is_complete(r)}
        if not kept:
            raise InputError(", ".join(str(p) for p in paths), "--complete-only",
                             f"none of the {len(files)} reports is of a finished run")
        reports, files, figures = [r for r, _, _ in kept], [p for _, p, _ in kept], [f for _, _, f in kept]
    df = aggregate_reports(reports, [str(p) for p in files], figures)
    df.attrs["left_out"] = left_out
    return df


# -- written outputs --------------------------------------------------------------------------------

METRIC_COLUMNS = {"rate": [c for c in RATE_COLUMNS if c not in ("proponent", "codec", "target_bpp", "status")],
                  "summary": SUMMARY_COLUMNS}


def _bare(df: pd.DataFrame) -> pd.DataFrame:
    """The frame without its `attrs`: pandas deep-copies them on every operation (iterrows, where, a
    selection), which for a hundred reports' task and performance rows cost seconds per output file."""
    out = df.copy(deep=False)
    out.attrs = {}
    return out


def display_frame(df: pd.DataFrame) -> pd.DataFrame:
    """For the files: 'not measured' where a figure of that row kind is missing, '' where it does not apply.
    (Without the frame's `attrs`: the callers read those from the frame they were given.)"""
    df = _bare(df)
    out = df.astype(object).where(df.notna(), None)
    anchor = out["anchor"].fillna("").astype(bool) if "anchor" in out.columns else pd.Series(False, index=out.index)
    for kind, cols in (("rate", ANCHOR_NA_RATE), ("summary", ANCHOR_NA_SUMMARY)):
        mask = (out["row"] == kind) & anchor
        for c in cols:
            out.loc[mask & out[c].isna(), c] = NOT_APPLICABLE
    for kind, cols in METRIC_COLUMNS.items():
        mask = out["row"] == kind
        for c in cols:
            out.loc[mask & out[c].isna(), c] = table.NOT_MEASURED
    return out.where(out.notna(), "")


def to_csv(df: pd.DataFrame) -> str:
    """Full precision; text a spreadsheet would evaluate (`=`, `+`, `-`, `@` first) gets a leading `'`."""
    disp = display_frame(df)
    for c in disp.columns:
        disp[c] = [csv_cell(v) for v in disp[c]]
    return disp.to_csv(index=False, lineterminator="\n")


def _shown(r, c: str) -> str:
    """A cell as the text tables show it: kMAC/px of an incomplete count as a lower bound."""
    v = r[c]
    if c.startswith("kmac_px") and _is_false(r.get("count_complete")) and _num(v) is not None \
            and isinstance(v, (int, float)) and not isinstance(v, bool):
        return table.fmt(table.AtLeast(v), c)
    return table.fmt(v, c)


def summary_cell(r, c: str) -> str:
    """A cell of a displayed row as text (plain, unescaped), with the unfinished mark on the codec."""
    return _shown(r, c) + (_mark(r) if c == "codec" else "")


def _md_cell(r, c: str) -> str:
    return markdown_cell(_shown(r, c)) if r[c] != "" else ""


def _is_false(v) -> bool:
    """False as a flag (a Python or numpy bool, or 0.0 in a float column), not a missing value."""
    return v is not None and not isinstance(v, str) and _num(v) is not None and not bool(v)


def _mark(r) -> str:
    """The visible mark of a row of an unfinished run."""
    return " (unfinished)" if _is_false(r.get("complete")) else ""


def to_markdown(df: pd.DataFrame) -> str:
    disp = display_frame(df)
    lines = ["# JPEG AI complexity — all proponents", ""]
    warns = df.attrs.get("warnings") or {}
    for path, w in warns.items():
        lines.append(f"> **Warning** — `{markdown_code(path)}`: {markdown_text(w)}")
    for path, w in (df.attrs.get("left_out") or {}).items():
        lines.append(f"> **Left out** (--complete-only) — `{markdown_code(path)}`: {markdown_text(w)}")
    if warns or df.attrs.get("left_out"):
        lines.append("")
    for kind, title, cols in (("summary", "Summary per proponent", ["proponent", "codec"] + SUMMARY_COLUMNS + ["warning"]),
                              ("rate", "Per rate point", ["proponent", "codec"] + [c for c in RATE_COLUMNS if c not in
                                                                                   ("proponent", "codec")] + ["warning"])):
        lines += [f"## {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for _, r in disp[disp["row"] == kind].iterrows():
            cells = [_md_cell(r, c) for c in cols]
            cells[1] += _mark(r)
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        if kind == "summary":
            lines += performance_markdown(df)
    rows = df.attrs.get("tasks") or []
    if rows:
        cols = [c for c in TASK_COLUMNS if c not in ("report", "complete")]
        lines += ["## Compressed-domain tasks", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(markdown_cell(_task_text(r, c)) for c in cols) + " |" for r in rows]
        lines += ["", markdown_text(tasks_table.NOTE), ""]
    return "\n".join(lines)


PERFORMANCE_NOTE = ("one row per proponent × decoder: worst-case decoder kMAC/px, AVG BD-rate (mean over the JPEG AI "
                    "metric set, pchip) against each anchor, CPU decode time (median over rate points; ms per "
                    "megapixel and seconds per call); n/c = no BD-rate (profile without --anchors)")


def performance_markdown(df: pd.DataFrame) -> list[str]:
    perf = df.attrs.get("performance") or []
    if not perf:
        return []
    cols, rows = performance.flat(perf)
    lines = ["## Complexity–performance", "", markdown_text(PERFORMANCE_NOTE) + ".", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(markdown_cell(performance.fmt(r[c], c)) if c in ("proponent", "decoder")
                                       else performance.fmt(r[c], c) for c in cols) + " |")
    return lines + [""]


def performance_html(df: pd.DataFrame) -> str:
    from .render import plots
    from .render.html import figure

    perf = df.attrs.get("performance") or []
    if not perf:
        return ""
    cols, rows = performance.flat(perf)
    out = ["<h2 id=complexity-performance>Complexity–performance</h2>", f"<p class=small>{escape(PERFORMANCE_NOTE)}.</p>",
           "<table id=perf-table><tr>" + "".join(f"<th>{escape(c)}</th>" for c in cols) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td{'' if c in ('proponent', 'decoder') else ' class=num'}>"
                                    f"{escape(performance.fmt(r[c], c))}</td>" for c in cols) + "</tr>")
    out.append("</table>")
    series = {}
    for a in performance.anchors(perf):
        for r in perf:
            series[f"{r['decoder']} vs {a}"] = [(r["kmac_px_decoder_worst"], r["avg_bd"].get(a))]
    if series:
        out.append("<div class=plots>" + figure(
            plots.scatter(series, "worst-case decoder kMAC/px", "AVG BD-rate (%)", "complexity vs performance"),
            "one point per decoder and anchor: lower is better on both axes") + "</div>")
    return "\n".join(out)


def _label(r) -> str:
    return f"{r['proponent']} / {r['codec']}"


def aggregate_plots(df: pd.DataFrame) -> list[tuple[str, str]]:
    from .render import plots

    df = _bare(df)

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
    from .render.html import CSS, SCRIPT, figure, verdict_class

    disp = display_frame(df)
    parts = ["<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
             "<title>JPEG AI complexity — all proponents</title>", f"<style>{CSS}.warn{{background:#fff3cd;"
             "border:1px solid #e0b000;padding:.5em;margin:.5em 0}} tr.flagged td{{background:#fff8e1}} "
             ".unfinished{color:#a15c00;font-weight:bold}</style>",
             "</head><body><h1>JPEG AI complexity — all proponents</h1>"]
    for path, w in (df.attrs.get("warnings") or {}).items():
        parts.append(f"<div class=warn><b>Warning</b> — <code>{escape(path)}</code>: {escape(w)}</div>")
    for path, w in (df.attrs.get("left_out") or {}).items():
        parts.append(f"<div class=warn><b>Left out</b> (--complete-only) — <code>{escape(path)}</code>: "
                     f"{escape(w)}</div>")

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
                    mark = (" <span class=unfinished title='run not finished'>⚠ unfinished</span>"
                            if c == "codec" and _mark(r) else "")
                    cells.append(f"<td{' class=num' if num else ''}>{escape(_shown(r, c))}{mark}</td>")
            classes = " ".join(k for k, on in (("flagged", r["warning"]), ("incomplete", _mark(r))) if on)
            out.append((f"<tr class='{classes}'>" if classes else "<tr>") + "".join(cells) + "</tr>")
        return "\n".join(out + ["</table></div>"])

    parts.append("<h2>Summary per proponent</h2>")
    parts.append(tbl("summary", ["proponent", "codec"] + SUMMARY_COLUMNS + ["conditions", "warning"]))
    parts.append(performance_html(df))
    parts.append("<h2>Plots</h2><div class=plots>" + "".join(figure(u, c) for u, c in aggregate_plots(df)) + "</div>")
    parts.append("<h2>Per rate point</h2>")
    parts.append(tbl("rate", ["proponent", "codec"] + [c for c in RATE_COLUMNS if c not in ("proponent", "codec")]
                     + ["warning"]))
    rows = df.attrs.get("tasks") or []
    if rows:
        cols = [c for c in TASK_COLUMNS if c not in ("report", "complete")]
        parts.append("<h2>Compressed-domain tasks</h2><div style='overflow-x:auto'><table id=tasks><tr>"
                     + "".join(f"<th>{escape(c)}</th>" for c in cols) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{escape(_task_text(r, c))}</td>" for c in cols) + "</tr>" for r in rows]
        parts.append(f"</table></div><p class=small>{escape(tasks_table.NOTE)}</p>")
    parts.append(f"<p class=small>{len(df[df['row'] == 'summary'])} reports: "
                 + ", ".join(escape(p) for p in df[df["row"] == "summary"]["report"]) + "</p>")
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"


def write_outputs(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    files = [("aggregate.csv", to_csv(df)), ("aggregate.md", to_markdown(df)), ("aggregate.html", to_html(df))]
    if df.attrs.get("tasks"):
        files.append(("aggregate_tasks.csv", tasks_csv(df.attrs["tasks"])))
    for name, text in files:
        (out_dir / name).write_text(text, encoding="utf-8")
        paths.append(out_dir / name)
    return paths
