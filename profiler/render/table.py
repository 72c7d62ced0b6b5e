"""The standard JPEG AI complexity table, built from a Report: one row per rate point, and a summary.

Shared by every renderer so the console, CSV and Markdown always show the same figures. Every figure
comes from profiler/derive.py; nothing here computes a figure of its own or changes the report. A value
that was not measured is `NOT_MEASURED` here (None in the report), never 0. A kMAC/px figure from a
count that is not complete (an op without a formula) is an `AtLeast`: the text renderers show it as a
lower bound (`≥ 12.34`, `n/c` for an incomplete count of 0 MACs), CSV and JSON keep the number and say
`count_complete`.
"""

from __future__ import annotations

from .. import derive
from ..counting.conventions import kmac_per_pixel
from ..counting.engine import hierarchical
from ..model.report import RateResult, Report, ScopeCost, WorstCase

NOT_MEASURED = "not measured"
NOT_COUNTED = "n/c"

COLUMNS = ["proponent", "codec", "target_bpp", "status", "bpp", "psnr_rgb", "params_encoder", "params_decoder",
           "kmac_px_encoder", "kmac_px_decoder", "enc_cpu_s", "dec_cpu_s", "enc_gpu_s", "dec_gpu_s",
           "gpu_mem_enc_mib", "gpu_mem_dec_mib", "cpu_mem_enc_mib", "cpu_mem_dec_mib",
           "precision_encoder", "precision_decoder", "kmac_px_encoder_vm", "kmac_px_decoder_vm", "count_complete"]

SUMMARY_KEYS = ["params_largest_model", "params_total", "kmac_px_decoder_worst", "kmac_px_encoder_max"]


class AtLeast(float):
    """A kMAC/px figure from an incomplete count: the true figure is at least this. A float everywhere
    (CSV, JSON, pandas keep the number); `fmt` shows `≥ 12.34`, or `n/c` when nothing was counted."""

    __slots__ = ()


def lower_bound(value: float | None, complete: bool | None) -> float | None:
    """`value` as an `AtLeast` when its count is incomplete; unchanged otherwise (None stays None)."""
    if value is None or complete is None or complete:
        return value
    return AtLeast(value)


def _or_nm(value):
    return NOT_MEASURED if value is None else value


def _gpu_or_nm(value, r: RateResult):
    """A GPU figure, or "not measured (<why>)", e.g. "not measured (no CUDA device)"."""
    if value is not None:
        return value
    nm = r.not_measured.get("gpu")
    return f"{NOT_MEASURED} ({nm.reason})" if nm is not None else NOT_MEASURED


def is_not_measured(value) -> bool:
    return isinstance(value, str) and value.startswith(NOT_MEASURED)


def part_complete(r: RateResult, part: str) -> bool | None:
    """Every counted call of `part` at this rate point had a formula for every op (None: nothing counted)."""
    if not r.images:
        return None
    return all(p.counts[part].complete for p in r.images if part in p.counts)


def rate_row(report: Report, r: RateResult) -> dict:
    f = derive.rate_figures(r)
    p = r.params
    prec = report.submission.precision
    kmac = {part: lower_bound(f.kmac_px[part], part_complete(r, part)) for part in ("encoder", "decoder")}
    kmac_vm = {part: lower_bound(f.kmac_px_vm[part], part_complete(r, part)) for part in ("encoder", "decoder")}
    return {
        "proponent": report.submission.proponent,
        "codec": report.submission.codec,
        "target_bpp": r.target_bpp,
        "status": r.status,
        "bpp": _or_nm(f.bpp),
        "psnr_rgb": _or_nm(f.psnr_rgb),
        "params_encoder": _or_nm(p.encoder if p else None),
        "params_decoder": _or_nm(p.decoder if p else None),
        "kmac_px_encoder": _or_nm(kmac["encoder"]),
        "kmac_px_decoder": _or_nm(kmac["decoder"]),
        "enc_cpu_s": _or_nm(f.median_s[("cpu", "encode")]),
        "dec_cpu_s": _or_nm(f.median_s[("cpu", "decode")]),
        "enc_gpu_s": _gpu_or_nm(f.median_s[("cuda", "encode")], r),
        "dec_gpu_s": _gpu_or_nm(f.median_s[("cuda", "decode")], r),
        "gpu_mem_enc_mib": _gpu_or_nm(derive.peak_memory(r, "cuda", "encode", "max_allocated_mib"), r),
        "gpu_mem_dec_mib": _gpu_or_nm(derive.peak_memory(r, "cuda", "decode", "max_allocated_mib"), r),
        "cpu_mem_enc_mib": _or_nm(derive.peak_memory(r, "cpu", "encode", "peak_mib")),
        "cpu_mem_dec_mib": _or_nm(derive.peak_memory(r, "cpu", "decode", "peak_mib")),
        "precision_encoder": prec.get("encoder"),
        "precision_decoder": prec.get("decoder"),
        "kmac_px_encoder_vm": _or_nm(kmac_vm["encoder"]),
        "kmac_px_decoder_vm": _or_nm(kmac_vm["decoder"]),
        "count_complete": _or_nm(f.count_complete),
    }


def rows(report: Report) -> list[dict]:
    return [rate_row(report, r) for r in report.rates]


def summary(report: Report) -> dict:
    """The summary figures (derive.summary), worst cases from incomplete counts as lower bounds."""
    s = derive.summary(report)
    dec, enc = s.kmac_px_decoder_worst_at, s.kmac_px_encoder_max_at
    values = {"params_largest_model": s.params_largest_model, "params_total": s.params_total,
              "kmac_px_decoder_worst": lower_bound(s.kmac_px_decoder_worst, dec.complete if dec else None),
              "kmac_px_encoder_max": lower_bound(s.kmac_px_encoder_max, enc.complete if enc else None)}
    return {k: _or_nm(values[k]) for k in SUMMARY_KEYS}


def summary_counts_complete(report: Report) -> bool | None:
    """The summary's worst-case decoder and encoder maximum both come from complete counts (None: no count)."""
    s = derive.summary(report)
    ats = [a for a in (s.kmac_px_decoder_worst_at, s.kmac_px_encoder_max_at) if a is not None]
    return all(a.complete for a in ats) if ats else None


def rates_text(rates: list[float]) -> str:
    """0.25, 1.0 → "0.25, 1 bpp"."""
    return ", ".join(f"{t:g}" for t in rates) + " bpp"


def unfinished(report: Report) -> str | None:
    """None when the run finished; else one sentence saying what is missing (plain text, unescaped)."""
    if derive.is_complete(report):
        return None
    missing = derive.missing_rates(report)
    text = f"the run did not finish (state {report.run.state})"
    if missing:
        text += f": rate points planned and not measured: {rates_text(missing)}"
    return text + "; the summary figures cover only the rate points measured"


def hosts_note(report: Report) -> str | None:
    """None when every timed rate point ran on the same CPU model and torch build; else one sentence
    naming which ran where (derive.mixed_hosts; plain text, unescaped)."""
    mixed = derive.mixed_hosts(report)
    if not mixed:
        return None
    return "; ".join(mixed) + ": their timings are not comparable with each other"


SUMMARY_PARTIAL = "summary over the rate points measured only (the run did not finish)"


def not_measured_reasons(report: Report) -> dict[str, str]:
    """Why figures are missing: field → reason text (derive.not_measured; the code decides, this explains)."""
    return {k: v.reason for k, v in derive.not_measured(report).items()}


def error_message(r: RateResult) -> str:
    return r.error.message if r.error is not None else "unknown"


def fmt(value, column: str = "") -> str:
    """Human formatting used by the text renderers (CSV keeps full precision)."""
    if isinstance(value, AtLeast):
        return NOT_COUNTED if value == 0 else f"≥ {fmt(float(value), column)}"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if column.startswith("params") else str(value)
    if isinstance(value, float):
        if column.endswith("_s"):
            return f"{value:.4f}"
        if column == "target_bpp":
            return f"{value:.2f}"
        if column in ("bpp",):
            return f"{value:.4f}"
        return f"{value:.2f}"
    return str(value)


# -- views shared by the richer renderers (console, txt, html, vm export, aggregate) ---------------

RULE_KEYS = ("id", "level", "status", "measured", "limit", "fix")


def compliance_view(report: Report) -> tuple[str, list[dict]]:
    """(verdict, rules) from the report's typed verdict; ("not evaluated", []) when it has none.

    Each rule is `RULE_KEYS` of the rules engine's result (profiler/compliance.py).
    """
    comp = report.compliance
    if comp is None:
        return "not evaluated", []
    return comp.verdict, [{k: getattr(r, k) for k in RULE_KEYS} for r in comp.rules]


def worst_decoder_breakdown(report: Report) -> tuple[WorstCase | None, dict[str, ScopeCost]]:
    """The worst-case decoder (derive.worst_decoder: over test pictures and counted resolutions) and the
    per-module breakdown of the very call it was found in."""
    worst = derive.worst_decoder(report)
    if worst is None:
        return None, {}
    return worst.where, worst.per_module


def where_text(where: WorstCase) -> str:
    """"kodim23 200×100" or "resolution count 1920×1080" (plain text, unescaped)."""
    text = f"{where.image or 'resolution count'} {where.width}×{where.height}"
    if where.padding_share:   # coded larger than the picture: say how much of the figure is padding
        text += f", coded {where.coded_width}×{where.coded_height}: {where.padding_share:.1%} padding"
    return text


def module_rows(per_module: dict[str, ScopeCost], width: int, height: int, depth: int | None = None) -> list[dict]:
    """Per-module rows, largest first: MACs including children (rolled up) and the module's own.

    `depth` keeps only scopes with at most that many dotted parts (e.g. 2 → `decoder.g_s`).
    """
    costs = derive.count_scopes(per_module)
    rolled = hierarchical(costs)
    total = sum(c.macs for c in costs.values())
    out = []
    for name, macs in rolled.items():
        if depth is not None and len(name.split(".")) > depth:
            continue
        own = costs[name].macs if name in costs else 0
        out.append({"module": name, "macs": macs, "self_macs": own,
                    "kmac_px": kmac_per_pixel(macs, width, height),
                    "self_kmac_px": kmac_per_pixel(own, width, height),
                    "share": macs / total if total else 0.0})
    out.sort(key=lambda r: (-r["macs"], r["module"]))
    return out


def top_modules(report: Report, n: int = 8) -> tuple[WorstCase | None, list[dict]]:
    """The `n` costliest leaf-most scopes of the worst-case decoder (self MACs), largest first."""
    where, pm = worst_decoder_breakdown(report)
    if where is None:
        return None, []
    rows_ = [r for r in module_rows(pm, where.width, where.height) if r["self_macs"] > 0]
    rows_.sort(key=lambda r: (-r["self_macs"], r["module"]))
    return where, rows_[:n]
