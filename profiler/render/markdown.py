"""table.md: the standard table and summary as GitHub-flavoured Markdown (free text cell-escaped)."""

from __future__ import annotations

from ..model.report import Report
from . import bd, table, tasks_table
from .escape import markdown_cell as cell, markdown_code as code, markdown_text as text


def render(report: Report) -> str:
    sub = report.submission
    lines = [f"# {text(sub.codec)} ({text(sub.proponent)}) — JPEG AI complexity", "",
             f"Test conditions: `{code(report.conditions.name)}` · schema {report.schema_version} · "
             f"created {text(report.created)}", ""]
    unfinished = table.unfinished(report)
    if unfinished:
        lines += [f"> **Incomplete** — {text(unfinished)}.", ""]
    hosts = table.hosts_note(report)
    if hosts:
        lines += [f"> **Mixed machines** — {text(hosts)}.", ""]
    cols = table.COLUMNS[2:]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for row in table.rows(report):
        lines.append("| " + " | ".join(cell(table.fmt(row[c], c)) for c in cols) + " |")
    lines += ["", f"| {'summary (rate points measured only)' if unfinished else 'summary'} | value |", "|---|---|"]
    for k, v in table.summary(report).items():
        lines.append(f"| {k} | {cell(table.fmt(v, k))} |")
    at, _ = table.worst_decoder_breakdown(report)
    if at:
        where = at.image or f"{at.width}×{at.height} ({at.source})"
        kmac = table.fmt(table.lower_bound(at.kmac_px, at.complete))
        lines += ["", f"Worst-case decoder: {kmac} kMAC/px at {at.target_bpp} bpp, {text(where)}."]
    reasons = table.not_measured_reasons(report)
    if reasons:
        lines += ["", "Not measured: " + text("; ".join(f"{k}: {v}" for k, v in reasons.items())) + "."]
    failed = [r for r in report.rates if not r.ok]
    for r in failed:
        lines.append(f"- rate {r.target_bpp} failed: {text(table.error_message(r))}")
    if tasks_table.has_tasks(report):
        lines += ["", "## Compressed-domain tasks", ""]
        lines.append("| " + " | ".join(tasks_table.SHORT.get(c, c) for c in tasks_table.COLUMNS) + " |")
        lines.append("|" + "---|" * len(tasks_table.COLUMNS))
        rows = tasks_table.text_rows(report)
        for row in rows:
            if not row["error"]:
                lines.append("| " + " | ".join(cell(row[c]) for c in tasks_table.COLUMNS) + " |")
        lines += ["", text(tasks_table.NOTE)]
        for row in rows:
            if row["error"]:
                lines.append(f"- task {text(row['task'])} at {row['target_bpp']} bpp failed: {text(row['error'])}")
    lines += bd.markdown_lines(report)
    if report.anchor:
        lines += ["", f"Anchor: substitute for {text(report.anchor.substitute_for)} ({text(report.anchor.program)}); "
                      "complexity not applicable."]
    return "\n".join(lines) + "\n"
