"""vm.json: the figures under the JPEG AI reference software's (VM's) keys, so its scripts read them.

The VM writes per image `kmac`, `encCPU`, `decCPU`, `encGPU`, `decGPU` (complexity-facts.md §2):
`kmac` is the decoder's kMAC/px, times are seconds of one encode/decode call. Here the same keys are
given per rate point (max kMAC/px over images, median times over images, as the standard table) and
per image. A figure that was not measured is null, never 0.

`kmac` follows the report's counting convention (`conditions.counting.convention`); `kmac_strict` and
`kmac_vm` give both, since the VM's own figures use its ptflops conventions (transposed convs per
output position, biases and activations counted): compare VM numbers with `kmac_vm`.
"""

from __future__ import annotations

import json

from ..counting.conventions import kmac_per_pixel, vm as vm_figure
from ..counting.engine import ScopeCost
from ..report import ImageResult, RateResult, Report


def _vm_macs(count: dict) -> int:
    return sum(vm_figure(ScopeCost.from_dict(c)) for c in count.get("per_module", {}).values())


def _time(img: ImageResult, device: str, step: str) -> float | None:
    stats = (img.timing.get(device) or {}).get(step)
    return stats["median_s"] if stats else None


def image_entry(img: ImageResult, convention: str) -> dict:
    dec = img.counts["decoder"]
    strict = kmac_per_pixel(int(dec["macs"]), img.width, img.height)
    vm_k = kmac_per_pixel(_vm_macs(dec), img.width, img.height)
    return {"BPP": img.bpp, "kmac": vm_k if convention == "vm" else strict, "kmac_strict": strict, "kmac_vm": vm_k,
            "kmac_enc": img.kmac_px("encoder"),
            "encCPU": _time(img, "cpu", "encode"), "decCPU": _time(img, "cpu", "decode"),
            "encGPU": _time(img, "cuda", "encode"), "decGPU": _time(img, "cuda", "decode"),
            "width": img.width, "height": img.height, "PSNR": img.psnr_rgb}


def rate_entry(r: RateResult, convention: str) -> dict:
    imgs = {i.name: image_entry(i, convention) for i in r.images}
    def _max(key):
        vals = [e[key] for e in imgs.values() if e[key] is not None]
        return max(vals) if vals else None
    return {"target_bpp": r.target_bpp, "status": r.status,
            "BPP": r.bpp_mean(), "kmac": _max("kmac"), "kmac_strict": _max("kmac_strict"), "kmac_vm": _max("kmac_vm"),
            "encCPU": r.median_time("cpu", "encode"), "decCPU": r.median_time("cpu", "decode"),
            "encGPU": r.median_time("cuda", "encode"), "decGPU": r.median_time("cuda", "decode"),
            "images": imgs}


def to_dict(report: Report) -> dict:
    convention = (report.conditions.get("counting") or {}).get("convention", "strict")
    return {"codec": report.submission["codec"], "proponent": report.submission["proponent"],
            "kmac_convention": convention, "time_unit": "s",
            "rates": [rate_entry(r, convention) for r in report.rates]}


def render(report: Report) -> str:
    return json.dumps(to_dict(report), indent=1) + "\n"
