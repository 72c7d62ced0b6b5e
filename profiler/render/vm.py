"""vm.json: the figures under the JPEG AI reference software's (VM's) keys, so its scripts read them.

The VM writes per image `kmac`, `encCPU`, `decCPU`, `encGPU`, `decGPU` (complexity-facts.md §2):
`kmac` is the decoder's kMAC/px, times are seconds of one encode/decode call. Here the same keys are
given per rate point (max kMAC/px over images, median times over images, as the standard table) and
per image. A figure that was not measured is null, never 0.

`kmac` follows the report's counting convention (`conditions.counting.convention`); `kmac_strict` and
`kmac_vm` give both, since the VM's own figures use its ptflops conventions (transposed convs per
output position, biases and activations counted): compare VM numbers with `kmac_vm`. `count_complete`
is false where an op had no formula: the kMAC/px figures are then lower bounds.
"""

from __future__ import annotations

import json

from .. import derive
from ..model.report import Picture, RateResult, Report


def _time(img: Picture, device: str, step: str) -> float | None:
    stats = img.timing.get(device, {}).get(step)
    return stats.median_s if stats else None


def image_entry(img: Picture, convention: str) -> dict:
    strict = derive.picture_kmac(img, "decoder")
    vm_k = derive.picture_kmac(img, "decoder", "vm")
    return {"BPP": img.bpp, "kmac": vm_k if convention == "vm" else strict, "kmac_strict": strict, "kmac_vm": vm_k,
            "kmac_enc": derive.picture_kmac(img, "encoder"),
            "encCPU": _time(img, "cpu", "encode"), "decCPU": _time(img, "cpu", "decode"),
            "encGPU": _time(img, "cuda", "encode"), "decGPU": _time(img, "cuda", "decode"),
            "width": img.width, "height": img.height, "PSNR": img.psnr_rgb,
            "count_complete": all(c.complete for c in img.counts.values())}


def rate_entry(r: RateResult, convention: str) -> dict:
    imgs = {i.name: image_entry(i, convention) for i in r.images}

    def _max(key):
        vals = [e[key] for e in imgs.values() if e[key] is not None]
        return max(vals) if vals else None
    f = derive.rate_figures(r)
    return {"target_bpp": r.target_bpp, "status": r.status,
            "BPP": f.bpp, "kmac": _max("kmac"), "kmac_strict": _max("kmac_strict"), "kmac_vm": _max("kmac_vm"),
            "encCPU": f.median_s[("cpu", "encode")], "decCPU": f.median_s[("cpu", "decode")],
            "encGPU": f.median_s[("cuda", "encode")], "decGPU": f.median_s[("cuda", "decode")],
            "count_complete": f.count_complete,
            "images": imgs}


def to_dict(report: Report) -> dict:
    convention = report.conditions.counting.convention
    return {"codec": report.submission.codec, "proponent": report.submission.proponent,
            "kmac_convention": convention, "time_unit": "s",
            "complete": derive.is_complete(report), "missing_rates": derive.missing_rates(report),
            "rates": [rate_entry(r, convention) for r in report.rates]}


def render(report: Report) -> str:
    return json.dumps(to_dict(report), indent=1) + "\n"
