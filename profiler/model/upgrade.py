"""Reports of schema 1.x → the 2.0 shape, so `aggregate` and `check --report` keep reading old reports.

Changes in 2.0: `not_measured` entries are `{code, reason}` (1.x had the reason only; its code is
inferred here from the text, the one place where text is read to decide); a resolution holds its
encoder and decoder counts (`encoder`/`decoder`, as a test picture's `counts`) instead of flat
`macs_*`/`kmac_px_*` keys; empty objects that meant "absent" (`crosscheck`, `interop`, `weights`,
`precision`) are null; the summary is recomputed by profiler/derive.py, never trusted from the file; a
1.0 report (no `run`) was written when its run had finished.
"""

from __future__ import annotations

import copy

from .report import NotMeasuredCode


def _code(reason: str) -> str:
    text = reason.lower()
    if "no cuda" in text:
        return NotMeasuredCode.NO_DEVICE.value
    if "not requested" in text:
        return NotMeasuredCode.NOT_REQUESTED.value
    if "encode_networks" in text or "could not move" in text:
        return NotMeasuredCode.NOT_AVAILABLE.value
    if "count" in text and ("may not" in text or "disagree" in text):
        return NotMeasuredCode.DISAGREES.value
    return NotMeasuredCode.FAILED.value


def _not_measured(d: dict) -> dict:
    return {k: (v if isinstance(v, dict) else {"code": _code(str(v)), "reason": str(v)}) for k, v in (d or {}).items()}


def _resolution(e: dict) -> dict:
    out = {k: e[k] for k in ("width", "height", "method", "seconds") if k in e}
    out["note"] = e.get("note", "")
    w, h = int(e["width"]), int(e["height"])
    for part in ("encoder", "decoder"):
        macs = e.get(f"macs_{part}")
        if macs is None:
            continue
        pm = e.get(f"per_module_{part}")
        if not pm:
            # 1.x kept totals only: one scope carries them, its vm figure from the stored vm kMAC/px.
            vm = e.get(f"kmac_px_{part}_vm")
            pm = {part: {"macs": int(macs), "vm_macs": round(vm * w * h * 1000) if vm is not None else int(macs),
                         "bias": 0, "elements": {}}}
        out[part] = {"macs": int(macs), "complete": bool(e.get(f"complete_{part}", True)), "per_module": pm,
                     "uncounted": dict(e.get(f"uncounted_{part}") or {})}
    if e.get("meta_vs_real"):
        out["meta_vs_real"] = e["meta_vs_real"]
    return out


def upgrade_1x(data: dict) -> dict:
    """A 1.x report dict in the 2.0 shape (a new dict; the input is not changed)."""
    d = copy.deepcopy(data)
    d["schema_version"] = "2.0"
    d["not_measured"] = _not_measured(d.get("not_measured"))
    d["summary"] = None
    if not d.get("run"):
        d["run"] = {"state": "complete", "planned_rates": [r["target_bpp"] for r in d.get("rates", [])]}
    if d.get("compliance"):
        d["compliance"].setdefault("rules_source", "")
    else:
        d["compliance"] = None
    for r in d.get("rates", []):
        r["not_measured"] = _not_measured(r.get("not_measured"))
        for key in ("crosscheck", "interop", "weights", "precision", "params", "error"):
            if not r.get(key):
                r[key] = None
        r["resolutions"] = [_resolution(e) for e in r.get("resolutions", [])]
        r["worker"] = r.get("worker") or {}
        r["environment"] = r.get("environment") or {}
    return d
