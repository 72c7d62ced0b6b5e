"""The complexity–performance table (the layout of the JPEG AI overview's Table III): one row per
proponent × decoder (one report each), its worst-case decoder kMAC/px, its AVG BD-rate against each
anchor, and its CPU decode time beside them.

Reads reports only (`Report.bd_rates` from `profile --anchors`, the summary from profiler/derive.py);
anchor reports themselves are not rows (their complexity is not applicable).
"""

from __future__ import annotations

import statistics

from . import derive
from .model.report import Report

COLUMNS = ["proponent", "decoder", "kmac_px_decoder_worst", "avg_bd", "dec_cpu_ms_per_mpx", "dec_cpu_s", "complete"]


def _decode_ms_per_mpx(report: Report) -> float | None:
    """Median over rate points of each rate point's CPU decode ms per megapixel (in-process timing)."""
    vals = [r.timing["cpu"]["decode"].ms_per_mpx.median for r in report.ok_rates()
            if "cpu" in r.timing and "decode" in r.timing["cpu"]]
    return statistics.median(vals) if vals else None


def _decode_s(report: Report) -> float | None:
    vals = [v for v in (derive.median_time(r, "cpu", "decode") for r in report.ok_rates()) if v is not None]
    return statistics.median(vals) if vals else None


def row(report: Report, path: str = "") -> dict:
    worst = derive.worst_decoder(report)
    return {
        "proponent": report.submission.proponent,
        "decoder": report.submission.codec,
        "kmac_px_decoder_worst": worst.where.kmac_px if worst else None,
        "kmac_complete": worst.where.complete if worst else None,      # False: a lower bound
        "avg_bd": {c.anchor: c.avg_percent for c in report.bd_rates},
        "avg_bd_metrics": {c.anchor: list(c.avg_metrics) for c in report.bd_rates},
        "dec_cpu_ms_per_mpx": _decode_ms_per_mpx(report),
        "dec_cpu_s": _decode_s(report),
        "complete": derive.is_complete(report),
        "report": path,
    }


def rows(reports: list[Report], paths: list[str]) -> list[dict]:
    """One row per report that is not an anchor's, in the given order."""
    return [row(r, p) for r, p in zip(reports, paths) if r.anchor is None]


def anchors(table: list[dict]) -> list[str]:
    """Every anchor some row has a BD-rate against, in first-seen order."""
    seen: list[str] = []
    for r in table:
        for a in r["avg_bd"]:
            if a not in seen:
                seen.append(a)
    return seen


def flat(table: list[dict]) -> tuple[list[str], list[dict]]:
    """Columns and rows with one `AVG BD vs <anchor>` column per anchor (None: no BD-rate)."""
    names = anchors(table)
    cols = ["proponent", "decoder", "kmac_px_decoder_worst"] + [f"AVG BD vs {a}" for a in names] + \
           ["dec_cpu_ms_per_mpx", "dec_cpu_s"]
    out = []
    for r in table:
        d = {k: r[k] for k in ("proponent", "decoder", "kmac_px_decoder_worst", "dec_cpu_ms_per_mpx", "dec_cpu_s")}
        d.update({f"AVG BD vs {a}": r["avg_bd"].get(a) for a in names})
        out.append(d)
    return cols, out


def fmt(v, col: str) -> str:
    if v is None:
        return "n/c" if col.startswith("AVG BD") else "n/m"
    if col.startswith("AVG BD"):
        return f"{v:+.2f} %"
    if col == "kmac_px_decoder_worst":
        return f"{v:,.1f}"
    if col == "dec_cpu_ms_per_mpx":
        return f"{v:,.0f}"
    if col == "dec_cpu_s":
        return f"{v:.4f}"
    return str(v)
