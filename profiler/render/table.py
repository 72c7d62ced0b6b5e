"""The standard JPEG AI complexity table, built from a Report: one row per rate point, and a summary.

Shared by every renderer so the console, CSV and Markdown always show the same figures. A value that
was not measured is `NOT_MEASURED` here (None in the report), never 0.
"""

from __future__ import annotations

from ..report import RateResult, Report

NOT_MEASURED = "not measured"

COLUMNS = ["proponent", "codec", "target_bpp", "status", "bpp", "psnr_rgb", "params_encoder", "params_decoder",
           "kmac_px_encoder", "kmac_px_decoder", "enc_cpu_s", "dec_cpu_s", "enc_gpu_s", "dec_gpu_s",
           "gpu_mem_enc_mib", "gpu_mem_dec_mib", "cpu_mem_enc_mib", "cpu_mem_dec_mib",
           "precision_encoder", "precision_decoder"]

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
    }


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
