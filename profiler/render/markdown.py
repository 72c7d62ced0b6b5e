"""table.md: the standard table and summary as GitHub-flavoured Markdown."""

from __future__ import annotations

from ..report import Report
from . import table


def render(report: Report) -> str:
    sub = report.submission
    lines = [f"# {sub['codec']} ({sub['proponent']}) — JPEG AI complexity", "",
             f"Test conditions: `{report.conditions.get('name')}` · schema {report.schema_version} · "
             f"created {report.created}", ""]
    cols = table.COLUMNS[2:]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for row in table.rows(report):
        lines.append("| " + " | ".join(table.fmt(row[c], c) for c in cols) + " |")
    lines += ["", "| summary | value |", "|---|---|"]
    for k, v in table.summary(report).items():
        lines.append(f"| {k} | {table.fmt(v, k)} |")
    at = (report.summary or {}).get("kmac_px_decoder_worst_at")
    if at:
        where = at["image"] or f"{at['width']}×{at['height']} ({at['source']})"
        lines += ["", f"Worst-case decoder: {at['kmac_px']:.2f} kMAC/px at {at['target_bpp']} bpp, {where}."]
    reasons = table.not_measured_reasons(report)
    if reasons:
        lines += ["", "Not measured: " + "; ".join(f"{k}: {v}" for k, v in reasons.items()) + "."]
    failed = [r for r in report.rates if not r.ok]
    for r in failed:
        lines.append(f"- rate {r.target_bpp} failed: {(r.error or {}).get('message', 'unknown')}")
    return "\n".join(lines) + "\n"
