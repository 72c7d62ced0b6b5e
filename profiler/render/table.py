"""The standard JPEG AI complexity table, built from a Report: one row per rate point, and a summary.

Shared by every renderer so the console, CSV and Markdown always show the same figures. A value that
was not measured is `NOT_MEASURED` here (None in the report), never 0.
"""

from __future__ import annotations

from ..counting.conventions import figure, kmac_per_pixel
from ..report import RateResult, Report

NOT_MEASURED = "not measured"

COLUMNS = ["proponent", "codec", "target_bpp", "status", "bpp", "psnr_rgb", "params_encoder", "params_decoder",
           "kmac_px_encoder", "kmac_px_decoder", "enc_cpu_s", "dec_cpu_s", "enc_gpu_s", "dec_gpu_s",
           "gpu_mem_enc_mib", "gpu_mem_dec_mib", "cpu_mem_enc_mib", "cpu_mem_dec_mib",
           "precision_encoder", "precision_decoder", "kmac_px_encoder_vm", "kmac_px_decoder_vm", "count_complete"]

SUMMARY_KEYS = ["params_largest_model", "params_total", "kmac_px_decoder_worst", "kmac_px_encoder_max"]


def _or_nm(value):
    return NOT_MEASURED if value is None else value


def _gpu_or_nm(value, r: RateResult):
    """A GPU figure, or "not measured (<why>)", e.g. "not measured (no CUDA device)"."""
    if value is not None:
        return value
    reason = r.not_measured.get("gpu")
    return f"{NOT_MEASURED} ({reason})" if reason else NOT_MEASURED


def is_not_measured(value) -> bool:
    return isinstance(value, str) and value.startswith(NOT_MEASURED)


def rate_row(report: Report, r: RateResult) -> dict:
    p = r.params or {}
    imgs = r.images
    psnr = [i.psnr_rgb for i in imgs if i.psnr_rgb is not None]
    return {
        "proponent": report.submission["proponent"],
        "codec": report.submission["codec"],
        "target_bpp": r.target_bpp,
        "status": r.status,
        "bpp": _or_nm(r.bpp_mean()),
        "psnr_rgb": _or_nm(sum(psnr) / len(psnr) if psnr else None),
        "params_encoder": _or_nm(p.get("encoder")),
        "params_decoder": _or_nm(p.get("decoder")),
        "kmac_px_encoder": _or_nm(r.kmac_px_max("encoder")),
        "kmac_px_decoder": _or_nm(r.kmac_px_max("decoder")),
        "enc_cpu_s": _or_nm(r.median_time("cpu", "encode")),
        "dec_cpu_s": _or_nm(r.median_time("cpu", "decode")),
        "enc_gpu_s": _gpu_or_nm(r.median_time("cuda", "encode"), r),
        "dec_gpu_s": _gpu_or_nm(r.median_time("cuda", "decode"), r),
        "gpu_mem_enc_mib": _gpu_or_nm(r.peak_memory("cuda", "encode", "max_allocated_mib"), r),
        "gpu_mem_dec_mib": _gpu_or_nm(r.peak_memory("cuda", "decode", "max_allocated_mib"), r),
        "cpu_mem_enc_mib": _or_nm(r.peak_memory("cpu", "encode", "peak_mib")),
        "cpu_mem_dec_mib": _or_nm(r.peak_memory("cpu", "decode", "peak_mib")),
        "precision_encoder": report.submission["precision"].get("encoder"),
        "precision_decoder": report.submission["precision"].get("decoder"),
        "kmac_px_encoder_vm": _or_nm(kmac_px_vm_max(r, "encoder")),
        "kmac_px_decoder_vm": _or_nm(kmac_px_vm_max(r, "decoder")),
        "count_complete": _or_nm(count_complete(r)),
    }


def kmac_px_vm_max(r: RateResult, part: str) -> float | None:
    """kMAC/px in the JPEG AI reference software's convention (counting/conventions.py `vm`), max over images."""
    return max((kmac_per_pixel(figure(i.count(part).total(), "vm"), i.width, i.height) for i in r.images),
               default=None)


def count_complete(r: RateResult) -> bool | None:
    """Every executed op had a formula, in every counted encode and decode (None: nothing counted)."""
    if not r.images:
        return None
    return all(i.counts[p].get("complete", False) for i in r.images for p in ("encoder", "decoder"))


def rows(report: Report) -> list[dict]:
    return [rate_row(report, r) for r in report.rates]


def summary(report: Report) -> dict:
    s = report.summary or report.compute_summary()
    return {k: _or_nm(s.get(k)) for k in SUMMARY_KEYS}


def not_measured_reasons(report: Report) -> dict[str, str]:
    """Why figures are missing: field → reason, over the report and all rate points."""
    reasons = dict(report.not_measured)
    for r in report.rates:
        for k, v in r.not_measured.items():
            reasons.setdefault(k, v)
    return reasons


def fmt(value, column: str = "") -> str:
    """Human formatting used by the text renderers (CSV keeps full precision)."""
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
    """(verdict, rules) from `report.compliance`, tolerant of its absence.

    The verdict is the report's own when it states one; otherwise "fail" if any mandatory rule
    failed, "pass" if rules were evaluated and none failed, and "not evaluated" without rules.
    Each rule is `RULE_KEYS` of the rules engine's result (profiler/compliance.py; missing keys are None).
    """
    comp = report.compliance
    if not comp:
        return "not evaluated", []
    raw = comp.get("rules") or comp.get("results") or []
    if isinstance(raw, dict):
        raw = [{"id": k, **v} for k, v in raw.items()]
    rules = [{k: r.get(k) for k in RULE_KEYS} for r in raw]
    verdict = comp.get("verdict")
    if not verdict:
        statuses = {str(r["status"]).lower() for r in rules}
        verdict = "fail" if "fail" in statuses else "pass" if rules else "not evaluated"
    return str(verdict), rules


def worst_decoder_breakdown(report: Report) -> tuple[dict | None, dict[str, dict]]:
    """Where the worst-case decoder count was executed, and its per-module self costs.

    The breakdown comes from the counted `decode()` with the highest decoder kMAC/px (the summary's
    worst case when that is an image; resolution counts are used when they carry a breakdown).
    Returns (where, per_module) with where = {target_bpp, image, width, height, kmac_px, macs}.
    """
    best = None
    for r in report.ok_rates():
        for img in r.images:
            k = img.kmac_px("decoder")
            if best is None or k > best[0]:
                best = (k, {"target_bpp": r.target_bpp, "image": img.name, "width": img.width,
                            "height": img.height, "kmac_px": k, "macs": img.macs("decoder")},
                        img.counts["decoder"].get("per_module", {}))
        for res in r.resolutions:
            pm = res.get("per_module_decoder")
            k = res.get("kmac_px_decoder")
            if pm and k is not None and (best is None or k > best[0]):
                best = (k, {"target_bpp": r.target_bpp, "image": None, "width": res.get("width"),
                            "height": res.get("height"), "kmac_px": k,
                            "macs": sum(c["macs"] for c in pm.values())}, pm)
    if best is None:
        return None, {}
    return best[1], best[2]


def module_rows(per_module: dict[str, dict], width: int, height: int, depth: int | None = None) -> list[dict]:
    """Per-module rows, largest first: MACs including children (rolled up) and the module's own.

    `depth` keeps only scopes with at most that many dotted parts (e.g. 2 → `decoder.g_s`).
    """
    from ..counting.conventions import kmac_per_pixel
    from ..counting.engine import ScopeCost, hierarchical

    costs = {k: ScopeCost.from_dict(v) for k, v in per_module.items()}
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


def top_modules(report: Report, n: int = 8) -> tuple[dict | None, list[dict]]:
    """The `n` costliest leaf-most scopes of the worst-case decoder (self MACs), largest first."""
    where, pm = worst_decoder_breakdown(report)
    if where is None:
        return None, []
    rows_ = [r for r in module_rows(pm, where["width"], where["height"]) if r["self_macs"] > 0]
    rows_.sort(key=lambda r: (-r["self_macs"], r["module"]))
    return where, rows_[:n]
