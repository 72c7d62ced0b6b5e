"""table.txt: fixed-width text, like the JPEG AI quality framework's text output.

A header block (submission, test conditions, verdict), then one line per rate point with the columns
padded to a fixed width and right-aligned, then the summary as `key : value` lines. Columns are
separated by at least two spaces, so `pandas.read_fwf` and `awk` read it back.
"""

from __future__ import annotations

from ..report import Report
from . import table

COLUMNS = [c for c in table.COLUMNS if c not in ("proponent", "codec")]


def _cell(value, column: str) -> str:
    if table.is_not_measured(value):
        return "n/m"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)          # no thousands separators in a machine-readable table
    return table.fmt(value, column)


def render(report: Report) -> str:
    sub = report.submission
    verdict, _ = table.compliance_view(report)
    head = [f"codec        : {sub['codec']}",
            f"proponent    : {sub['proponent']}",
            f"conditions   : {report.conditions.get('name')}",
            f"schema       : {report.schema_version}",
            f"created      : {report.created}",
            f"verdict      : {verdict}",
            ""]
    cells = [[_cell(row[c], c) for c in COLUMNS] for row in table.rows(report)]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(COLUMNS, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
    summary = table.summary(report)
    kw = max(len(k) for k in summary)
    lines += [""] + [f"{k.ljust(kw)} : {_cell(v, k)}" for k, v in summary.items()]
    reasons = table.not_measured_reasons(report)
    if reasons:
        lines += ["", "n/m = not measured:"] + [f"  {k}: {v}" for k, v in reasons.items()]
    for r in report.rates:
        if not r.ok:
            lines.append(f"rate {r.target_bpp:g} failed: {(r.error or {}).get('message', 'unknown')}")
    return "\n".join(head + lines) + "\n"
