"""table.txt: fixed-width text, like the JPEG AI quality framework's text output.

A header block (submission, test conditions, verdict), then one line per rate point with the columns
padded to a fixed width and right-aligned, then the summary as `key : value` lines. Columns are
separated by at least two spaces, so `pandas.read_fwf` and `awk` read it back. A kMAC/px figure from an
incomplete count is `≥12.34` (no space, so the columns still split on whitespace), `n/c` when 0.
"""

from __future__ import annotations

from ..model.report import Report
from . import table, tasks_table

COLUMNS = [c for c in table.COLUMNS if c not in ("proponent", "codec")]


def _one_line(text: str) -> str:
    return str(text).replace("\r", " ").replace("\n", " ")


def _cell(value, column: str) -> str:
    if table.is_not_measured(value):
        return "n/m"
    if isinstance(value, table.AtLeast):
        return table.fmt(value, column).replace(" ", "")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)          # no thousands separators in a machine-readable table
    return _one_line(table.fmt(value, column))


def render(report: Report) -> str:
    sub = report.submission
    verdict, _ = table.compliance_view(report)
    unfinished = table.unfinished(report)
    head = [f"codec        : {_one_line(sub.codec)}",
            f"proponent    : {_one_line(sub.proponent)}",
            f"conditions   : {_one_line(report.conditions.name)}",
            f"schema       : {report.schema_version}",
            f"created      : {_one_line(report.created)}",
            f"verdict      : {verdict}"]
    if unfinished:
        head.append(f"incomplete   : {unfinished}")
    hosts = table.hosts_note(report)
    if hosts:
        head.append(f"mixed hosts  : {_one_line(hosts)}")
    head.append("")
    cells = [[_cell(row[c], c) for c in COLUMNS] for row in table.rows(report)]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(COLUMNS, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
    summary = table.summary(report)
    kw = max(len(k) for k in summary)
    lines += [""] + ([table.SUMMARY_PARTIAL + ":"] if unfinished else [])
    lines += [f"{k.ljust(kw)} : {_cell(v, k)}" for k, v in summary.items()]
    reasons = table.not_measured_reasons(report)
    if reasons:
        lines += ["", "n/m = not measured:"] + [f"  {k}: {_one_line(v)}" for k, v in reasons.items()]
    for r in report.rates:
        if not r.ok:
            lines.append(f"rate {r.target_bpp:g} failed: {_one_line(table.error_message(r))}")
    if tasks_table.has_tasks(report):
        rows = tasks_table.text_rows(report)
        cols = tasks_table.COLUMNS
        # one token per cell: no thousands separators, no space after ≥, "n/m" for not measured
        def tok(v: str) -> str:
            return {"not measured": "n/m"}.get(v, _one_line(v).replace(",", "").replace("≥ ", "≥").replace(" ", "_"))
        cells = [[tok(r[c]) for c in cols] for r in rows if not r["error"]]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
        lines += ["", "compressed-domain tasks:", "  ".join(c.rjust(w) for c, w in zip(cols, widths))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
        lines.append(_one_line(tasks_table.NOTE))
        lines += [f"task {_one_line(r['task'])} at {r['target_bpp']} bpp failed: {_one_line(r['error'])}"
                  for r in rows if r["error"]]
    return "\n".join(head + lines) + "\n"
