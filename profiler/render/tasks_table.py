"""The tasks table, shared by every renderer: task × rate point × anchor, the latent pipeline beside the
anchor's decoded and original pipelines (derive.task_rows), and what it does not say (task accuracy).

kMAC/px is over the *output* pixels (the original picture; super-resolution: the ×4 output); MACs are per
picture (mean over the task's pictures); times are CPU medians; `ratio` is latent ÷ decoded anchor (strict).
A figure from an incomplete count is a lower bound (`≥`). Renderers print the table only when the
report holds tasks, so reports without any render as before.
"""

from __future__ import annotations

from .. import derive
from ..model.report import Report
from .table import AtLeast, lower_bound

COLUMNS = ["task", "kind", "target_bpp", "anchor",
           "latent_macs", "latent_kmac_px", "latent_cpu_s",
           "decoded_macs", "decoded_kmac_px", "decoded_cpu_s",
           "original_macs", "original_kmac_px", "original_cpu_s", "ratio"]
SHORT = {"target_bpp": "target", "latent_macs": "latent MACs", "latent_kmac_px": "latent kMAC/px",
         "latent_cpu_s": "latent CPU s", "decoded_macs": "decoded MACs", "decoded_kmac_px": "decoded kMAC/px",
         "decoded_cpu_s": "decoded CPU s", "original_macs": "original MACs", "original_kmac_px": "original kMAC/px",
         "original_cpu_s": "original CPU s", "ratio": "latent ÷ decoded"}
NOTE = ("Task accuracy was not measured: anchors (and task networks without weights) have random weights, "
        "the figures are complexity only. kMAC/px per output pixel (super-resolution: the ×4 output); "
        "MACs per picture; CPU medians; ratio = latent ÷ decoded anchor (strict MACs).")
NOT_MEASURED = "not measured"


def has_tasks(report: Report) -> bool:
    return any(r.tasks for r in report.rates)


def rows(report: Report) -> list[dict]:
    """One dict per derive.TaskRow, with the COLUMNS, `complete` (every count of the row complete; None
    for a failed task) and `error` (None, or the task's error message)."""
    out = []
    for t in derive.task_rows(report):
        row = {"task": t.task, "kind": t.kind, "target_bpp": t.target_bpp, "anchor": t.anchor or "—",
               "error": t.error}
        for name in ("latent", "decoded", "original"):
            f = getattr(t, name)
            row[f"{name}_macs"] = None if f is None else (f.macs if f.complete else AtLeast(f.macs))
            row[f"{name}_kmac_px"] = None if f is None else lower_bound(f.kmac_px, f.complete)
            row[f"{name}_cpu_s"] = None if f is None else f.cpu_s
        complete = t.latent is not None and t.decoded is not None and t.latent.complete and t.decoded.complete
        row["complete"] = None if t.latent is None else bool(complete and t.original.complete)
        row["ratio"] = None if t.ratio is None else (t.ratio if complete else "n/c")
        out.append(row)
    return out


def _compact(macs: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if macs >= scale:
            return f"{macs / scale:.3f} {unit}"
    return str(macs)


def fmt(value, column: str, compact: bool = False) -> str:
    """Text of one cell: MACs with thousands separators (`compact`: 4.089 G), kMAC/px to 2 places, the
    ratio to 4 significant digits."""
    if value is None:
        return NOT_MEASURED
    if isinstance(value, AtLeast):
        return "n/c" if value == 0 else "≥ " + fmt(float(value) if "kmac" in column else int(value), column, compact)
    if isinstance(value, str):
        return value
    if column.endswith("_macs"):
        return _compact(int(value)) if compact else f"{int(value):,}"
    if column.endswith("_s"):
        return f"{value:.4f}"
    if column == "ratio":
        return f"{value:.4g}"
    if column == "target_bpp":
        return f"{value:.2f}"
    return f"{value:.2f}"


def text_rows(report: Report, compact: bool = False) -> list[dict]:
    """rows() with every cell as its text."""
    return [{**{c: fmt(r[c], c, compact) for c in COLUMNS}, "complete": r["complete"], "error": r["error"]}
            for r in rows(report)]
