"""The rich console view: the standard table, the summary, and what was not measured or failed.

Every text that came from the submission or its run (names, error messages, module names, rule texts)
goes through `escape.markup`, so `[cuda:0]` or `[/red]` in it prints as written.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .. import derive
from ..model.report import RateResult, Report
from . import bd, table, tasks_table
from .escape import markup

SHORT = {"target_bpp": "target", "params_encoder": "params enc", "params_decoder": "params dec",
         "kmac_px_encoder": "kMAC/px enc", "kmac_px_decoder": "kMAC/px dec", "enc_cpu_s": "enc CPU s",
         "dec_cpu_s": "dec CPU s", "enc_gpu_s": "enc GPU s", "dec_gpu_s": "dec GPU s",
         "gpu_mem_enc_mib": "GPU MiB enc", "gpu_mem_dec_mib": "GPU MiB dec", "psnr_rgb": "PSNR",
         "precision_encoder": "prec enc", "precision_decoder": "prec dec"}
SHOWN = ["target_bpp", "status", "bpp", "psnr_rgb", "params_encoder", "params_decoder", "kmac_px_encoder",
         "kmac_px_decoder", "enc_cpu_s", "dec_cpu_s", "enc_gpu_s", "dec_gpu_s", "gpu_mem_enc_mib",
         "gpu_mem_dec_mib", "precision_encoder", "precision_decoder"]


def render(report: Report, console: Console | None = None) -> None:
    console = console or Console()
    sub = report.submission
    t = Table(title=markup(f"{sub.codec} — {sub.proponent} (JPEG AI complexity)"), show_lines=False)
    for c in SHOWN:
        t.add_column(SHORT.get(c, c), justify="left" if c in ("status",) or c.startswith("precision") else "right")
    for row in table.rows(report):
        cells = []
        for c in SHOWN:
            v = row[c]
            text = "n/m" if table.is_not_measured(v) else markup(table.fmt(v, c))
            if c == "status" and v != "ok":
                text = f"[red]{text}[/red]"
            cells.append(text)
        t.add_row(*cells)
    console.print(t)
    unfinished = table.unfinished(report)
    if unfinished:
        console.print(f"[bold yellow]incomplete[/bold yellow]: {markup(unfinished)}", highlight=False)
    hosts = table.hosts_note(report)
    if hosts:
        console.print(f"[bold yellow]mixed machines[/bold yellow]: {markup(hosts)}", highlight=False)
    s = table.summary(report)
    console.print(
        (f"{table.SUMMARY_PARTIAL}: " if unfinished else "") +
        f"largest model: [bold]{markup(table.fmt(s['params_largest_model'], 'params'))}[/bold] params · "
        f"total over rate points: [bold]{markup(table.fmt(s['params_total'], 'params'))}[/bold] · "
        f"worst-case decoder: [bold]{markup(table.fmt(s['kmac_px_decoder_worst']))}[/bold] kMAC/px · "
        f"encoder max: [bold]{markup(table.fmt(s['kmac_px_encoder_max']))}[/bold] kMAC/px")
    reasons = table.not_measured_reasons(report)
    if reasons:
        console.print(markup("n/m = not measured: " + "; ".join(f"{k}: {v}" for k, v in reasons.items())))
    for r in report.rates:
        if not r.ok:
            console.print(f"[red]rate {r.target_bpp} failed[/red]: {markup(table.error_message(r))}")
    render_top_modules(report, console)
    render_counting(report, console)
    render_tasks(report, console)
    bd.render_console(report, console)
    if report.anchor:
        console.print(markup(f"anchor: substitute for {report.anchor.substitute_for} ({report.anchor.program}); "
                             "complexity not applicable"), highlight=False)
    render_verdict(report, console)


def render_tasks(report: Report, console: Console) -> None:
    """The compressed-domain tasks table (render/tasks_table.py), when the report holds tasks."""
    if not tasks_table.has_tasks(report):
        return
    t = Table(title="compressed-domain tasks (latent pipeline vs anchors)", show_lines=False)
    shown = [c for c in tasks_table.COLUMNS if c != "kind"]     # the anchor names the kind; the width is short
    for c in shown:
        t.add_column(tasks_table.SHORT.get(c, c), justify="left" if c in ("task", "anchor") else "right",
                     no_wrap=c in ("task", "anchor"))
    failed = []
    for row in tasks_table.text_rows(report, compact=True):
        if row["error"]:
            failed.append(row)
            continue
        t.add_row(*(markup(row[c]) for c in shown))
    if t.row_count:
        console.print(t)
    for row in failed:
        console.print(f"[red]task {markup(row['task'])} at {row['target_bpp']} bpp failed[/red]: {markup(row['error'])}")
    console.print(markup(tasks_table.NOTE))


def render_top_modules(report: Report, console: Console, n: int = 8) -> None:
    """The costliest modules (own MACs) of the worst-case decoder: of the very call it was found in."""
    where, mods = table.top_modules(report, n)
    if not mods:
        return
    kmac = table.fmt(table.lower_bound(where.kmac_px, where.complete))
    t = Table(title=markup(f"top decoder modules at {where.target_bpp:g} bpp, {table.where_text(where)} "
                           f"({kmac} kMAC/px)"))
    for c in ("module", "kMAC/px (own)", "share"):
        t.add_column(c, justify="left" if c == "module" else "right")
    total = where.macs or 1
    for m in mods:
        t.add_row(markup(m["module"]), f"{m['self_kmac_px']:.2f}", f"{100 * m['self_macs'] / total:.1f} %")
    console.print(t)


def render_verdict(report: Report, console: Console) -> None:
    verdict, rules = table.compliance_view(report)
    colour = {"pass": "green", "fail": "red"}.get(verdict.lower(), "yellow")
    console.print(f"compliance verdict: [bold {colour}]{markup(verdict)}[/bold {colour}]")
    for r in rules:
        if str(r["status"]).lower() != "pass":
            fix = f" → fix: {r['fix']}" if r["fix"] else ""
            console.print(markup(f"  {r['id']}: {r['status']} — {r['measured'] or ''}{fix}"), highlight=False)


# ---- counting details (profiler/counting): strict vs vm, uncounted ops, cross-check --------------------
def render_counting(report: Report, console: Console) -> None:
    """Strict and vm figures, uncounted ops and the cross-check per rate point; consecutive rate points
    with the same text (one model at several rates) are printed once."""
    groups: list[tuple[list[float], str]] = []
    for r in report.ok_rates():
        text = _counting_text(r)
        if groups and groups[-1][1] == text:
            groups[-1][0].append(r.target_bpp)
        else:
            groups.append(([r.target_bpp], text))
    for rates, text in groups:
        label = f"rate {rates[0]:g}" if len(rates) == 1 else f"rates {rates[0]:g}–{rates[-1]:g} ({len(rates)})"
        console.print(f"{label}: {text}", highlight=False)


def _counting_text(r: RateResult) -> str:
    """One rate point's counting lines, as console markup (submission text escaped)."""
    row_dec = table.lower_bound(*_dec(r))
    vm_dec = table.lower_bound(*_dec(r, vm=True))
    uncounted: dict[str, int] = {}
    for img in r.images:
        for part in ("encoder", "decoder"):
            for op, n in img.counts[part].uncounted.items():
                uncounted[op] = uncounted.get(op, 0) + n
    line = f"decoder {markup(table.fmt(row_dec))} kMAC/px strict, {markup(table.fmt(vm_dec))} vm"
    line += "; count complete" if not uncounted else \
        "; [yellow]uncounted ops[/yellow]: " + markup(", ".join(f"{op}×{n}" for op, n in sorted(uncounted.items())))
    cc_all = r.crosscheck
    for part in ("encoder", "decoder"):
        cc = getattr(cc_all, part) if cc_all is not None else None
        if cc is None or not cc.counters:
            continue
        diffs = ", ".join(f"{name} {v.relative_difference * 100:+.2f} %"
                          if v.total is not None and v.relative_difference is not None
                          else f"{name} failed" for name, v in cc.counters.items())
        flag = " [red]UNEXPLAINED DIFFERENCE[/red]" if cc.flagged else ""
        line += f"\n  cross-check {part} ({cc_all.width}×{cc_all.height}): {markup(diffs)}{flag}"
        for text in cc.explanations[:3]:
            line += f"\n    {markup(text)}"
    return line


def _dec(r: RateResult, vm: bool = False) -> tuple[float | None, bool | None]:
    f = derive.rate_figures(r)
    return (f.kmac_px_vm if vm else f.kmac_px)["decoder"], table.part_complete(r, "decoder")
