"""report.html: one self-contained page per report — no network, no CDN, plots as SVG data URIs.

Sections: verdict, the standard table and summary, kMAC/px per part per rate point, the per-module
breakdown of the worst-case decoder, CPU/GPU time per rate point, parameters per model, the
compliance rules, what was not measured, the environment fingerprint and the test conditions.
"""

from __future__ import annotations

import json

from ..model.report import Report
from . import bd, plots, table, tasks_table
from .escape import html as escape

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0} th,td{border:1px solid #ccc;padding:.2em .5em}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{display:inline-block;padding:.2em .7em;border-radius:.3em;font-weight:bold;color:#fff}
.pass{background:#2e7d32} .fail{background:#c62828} .other{background:#757575}
.plots{display:flex;flex-wrap:wrap;gap:1em} .plots figure{margin:0} .plots img{max-width:580px;width:100%;border:1px solid #eee}
.nm{color:#888} .small{font-size:.8em;color:#555}
"""
INCOMPLETE_STYLE = "background:#fff3cd;border:1px solid #e0b000;padding:.5em;margin:.5em 0"

# Counts the plots that decoded, so a headless browser's DOM dump can show they rendered.
SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img.plot'), ok = 0;
  imgs.forEach(function (i) { if (i.complete && i.naturalWidth > 0) ok++; });
  document.body.setAttribute('data-plots-total', imgs.length);
  document.body.setAttribute('data-plots-loaded', ok);
});
"""


def verdict_class(verdict: str) -> str:
    v = verdict.lower()
    return "pass" if v == "pass" else "fail" if v == "fail" else "other"


def cell(value, column: str = "") -> str:
    if value is None or table.is_not_measured(value):
        return '<td class="nm">n/m</td>'
    num = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f'<td{" class=num" if num else ""}>{escape(table.fmt(value, column))}</td>'


def html_table(columns: list[str], rows: list[dict], formats: dict | None = None) -> str:
    formats = formats or {}
    out = ["<table><tr>" + "".join(f"<th>{escape(c)}</th>" for c in columns) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(cell(r.get(c), formats.get(c, c)) for c in columns) + "</tr>")
    return "\n".join(out + ["</table>"])


def kv_table(items: dict) -> str:
    rows = []
    for k, v in items.items():
        text = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list, tuple)) else table.fmt(v, k) if v is not None else "—"
        rows.append(f"<tr><th>{escape(str(k))}</th><td>{escape(text)}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def figure(uri: str, caption: str) -> str:
    return (f'<figure><img class="plot" alt="{escape(caption)}" src="{uri}">'
            f'<figcaption class="small">{escape(caption)}</figcaption></figure>')


def report_plots(report: Report) -> list[str]:
    ok = report.ok_rates()
    rows = [table.rate_row(report, r) for r in ok]
    figs = []

    def series(col):
        return [(row["target_bpp"], None if table.is_not_measured(row[col]) else row[col]) for row in rows]

    figs.append(figure(plots.lines({"encoder": series("kmac_px_encoder"), "decoder": series("kmac_px_decoder")},
                                   "target bpp", "kMAC/px", "kMAC/px per part per rate point"),
                       "kMAC/px of the real encode()/decode(), max over images, per rate point"))
    where, _ = table.worst_decoder_breakdown(report)
    if where:
        mods = worst_modules(report)[:15]
        figs.append(figure(plots.hbars([m["module"] for m in mods], [m["kmac_px"] for m in mods], "kMAC/px",
                                       "worst-case decoder, per module"),
                           f"decoder modules (children included) at {where.target_bpp:g} bpp, "
                           f"{table.where_text(where)}"))
    time_series = {f"{step} {dev.upper()}": series(col) for step, dev, col in
                   (("encode", "cpu", "enc_cpu_s"), ("decode", "cpu", "dec_cpu_s"),
                    ("encode", "gpu", "enc_gpu_s"), ("decode", "gpu", "dec_gpu_s"))
                   if any(v is not None for _, v in series(col))}
    figs.append(figure(plots.lines(time_series, "target bpp", "seconds per call (median)", "CPU/GPU time per rate point"),
                       "median time of one call; GPU lines only where a GPU was measured"))
    groups = [f"{row['target_bpp']:g}" for row in rows]
    params = {"encoder": [r.params.encoder if r.params else None for r in ok],
              "decoder": [r.params.decoder if r.params else None for r in ok],
              "model (enc ∪ dec)": [r.params.model if r.params else None for r in ok]}
    figs.append(figure(plots.grouped_bars(groups, params, "parameters", "parameters per model (rate point)"),
                       "parameters per rate point's model; shared tensors counted once in the model bar"))
    return figs


def worst_modules(report: Report) -> list[dict]:
    """Modules of the worst-case decoder, two levels deep (`decoder.g_s`) and deeper, largest first; scopes
    that executed no MAC (a GDN's reparametrisation, the entropy model's bounds) are left out."""
    where, pm = table.worst_decoder_breakdown(report)
    if where is None:
        return []
    return [m for m in table.module_rows(pm, where.width, where.height)
            if m["module"] != "decoder" and m["macs"] > 0]


def _dump(model) -> dict:
    """What the report recorded: fields it left unset or null are not listed (no rows of "—")."""
    def prune(v):
        if isinstance(v, dict):
            return {k: prune(x) for k, x in v.items() if x is not None and x != {}}
        return v
    return prune(model.model_dump(mode="json", exclude_unset=True))


def render(report: Report) -> str:
    sub = report.submission
    verdict, rules = table.compliance_view(report)
    title = f"{sub.codec} — {sub.proponent}"
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
             f"<meta name=viewport content='width=device-width, initial-scale=1'>",
             f"<title>{escape(title)} · JPEG AI complexity</title><style>{CSS}</style></head><body>",
             f"<h1>{escape(title)}</h1>",
             f"<p>JPEG AI complexity report · verdict <span class='verdict {verdict_class(verdict)}' id=verdict>"
             f"{escape(verdict)}</span></p>",
             f"<p class=small>version {escape(str(sub.version or '—'))} · test conditions "
             f"<code>{escape(str(report.conditions.name))}</code> · schema {escape(report.schema_version)} · "
             f"{escape(report.tool.name)} {escape(report.tool.version)} · created {escape(report.created)}</p>"]
    unfinished = table.unfinished(report)
    if unfinished:
        parts.append(f"<div class=incomplete id=incomplete style='{INCOMPLETE_STYLE}'><b>Incomplete</b> — {escape(unfinished)}.</div>")
    hosts = table.hosts_note(report)
    if hosts:
        parts.append(f"<div class=incomplete id=mixed-hosts style='{INCOMPLETE_STYLE}'><b>Mixed machines</b> — "
                     f"{escape(hosts)}.</div>")

    parts.append("<h2>Standard table</h2>")
    parts.append("<div style='overflow-x:auto'>" + html_table(table.COLUMNS[2:], table.rows(report)) + "</div>")
    s = table.summary(report)
    if unfinished:
        parts.append(f"<p class=small>{escape(table.SUMMARY_PARTIAL)}.</p>")
    parts.append(kv_table({k: (None if table.is_not_measured(v) else v) for k, v in s.items()}))
    at, _ = table.worst_decoder_breakdown(report)
    if at:
        where = at.image or f"{at.width}×{at.height} ({at.source})"
        kmac = table.fmt(table.lower_bound(at.kmac_px, at.complete))
        parts.append(f"<p>Worst-case decoder: <b>{escape(kmac)}</b> kMAC/px at {at.target_bpp:g} bpp, "
                     f"{escape(str(where))}.</p>")
    for r in report.rates:
        if not r.ok:
            parts.append(f"<p class=fail-line>Rate {r.target_bpp:g} failed: {escape(table.error_message(r))}</p>")

    parts.append("<h2>Plots</h2><div class=plots>" + "".join(report_plots(report)) + "</div>")
    if report.bd_rates:
        parts.append(bd.html_section(report))
    if report.anchor:
        parts.append(f"<p id=anchor>Anchor: substitute for {escape(report.anchor.substitute_for)} "
                     f"({escape(report.anchor.program)}); complexity not applicable.</p>")

    mods = worst_modules(report)
    if mods:
        parts.append("<h2>Worst-case decoder, per module</h2>")
        where, _ = table.worst_decoder_breakdown(report)
        bound = "" if where.complete else " (count incomplete: a lower bound)"
        parts.append(f"<p>At {where.target_bpp:g} bpp, {escape(table.where_text(where))}: "
                     f"{where.macs:,} MACs{bound}.</p>")
        parts.append("<p class=small>MACs including children; <i>self</i> is what the module executed outside its "
                     "children. kMAC/px over the picture the decoder produced.</p>")
        parts.append(html_table(["module", "macs", "self_macs", "kmac_px", "self_kmac_px", "share"],
                                [{**m, "share": f"{100 * m['share']:.1f} %"} for m in mods],
                                {"macs": "params", "self_macs": "params"}))

    if tasks_table.has_tasks(report):
        rows = tasks_table.text_rows(report)
        parts.append("<h2>Compressed-domain tasks</h2><div style='overflow-x:auto' id=tasks>")
        parts.append("<table><tr>" + "".join(f"<th>{escape(tasks_table.SHORT.get(c, c))}</th>"
                                             for c in tasks_table.COLUMNS) + "</tr>")
        for row in rows:
            if not row["error"]:
                parts.append("<tr>" + "".join(f"<td>{escape(row[c])}</td>" for c in tasks_table.COLUMNS) + "</tr>")
        parts.append("</table></div>")
        parts.append(f"<p class=small>{escape(tasks_table.NOTE)}</p>")
        for row in rows:
            if row["error"]:
                parts.append(f"<p class=fail-line>Task {escape(row['task'])} at {row['target_bpp']} bpp failed: "
                             f"{escape(row['error'])}</p>")

    parts.append("<h2>Compliance</h2>")
    if rules:
        parts.append(html_table(list(table.RULE_KEYS), rules))
    else:
        parts.append(f"<p>{escape(verdict)}: no rule results in this report.</p>")

    reasons = table.not_measured_reasons(report)
    if reasons:
        parts.append("<h2>Not measured</h2>" + kv_table(reasons))
    parts.append("<h2>Environment</h2>" + kv_table(flatten(_dump(report.environment))))
    parts.append("<h2>Test conditions</h2>" + kv_table(flatten(_dump(report.conditions))))
    options = _dump(report.options)
    if options:
        parts.append("<h2>Run options</h2>" + kv_table(options))
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"
