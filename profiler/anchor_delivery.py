"""An official anchor's delivery read into an anchor report: no program run (`jpegai-profile anchors --bitstreams`).

The delivery is in the evaluator's layout (profiler/delivery.py, the README's verify section):
`BITSTREAMS/<target>/<stem>.bin`, and the decoded pictures `DECODED/<target>/<stem>.png` (8-bit RGB, of the
original's size; beside the bitstreams by default) where they are delivered. Per rate folder and original:

- the rate from the bitstream's size, bpp = 8 · bytes / (W · H) of the original;
- the metrics of the decoded picture against the original (`profiler.quality.image_quality`, the same code
  as a profile's pictures); without a delivered decoded picture, none (the BD-rates then say the metric is
  not defined at that rate point);
- no encoder or decoder is run: MACs, times and memory are *not applicable* (an anchor's complexity is
  not part of the comparison), never zeros to rank.

The report is the usual schema, marked `anchor`, so `profile --anchors DIR` reuses it as any anchor report.
The delivery is all-or-nothing: a problem with it (a stray file, an unknown rate folder, a missing or empty
bitstream, a decoded picture of the wrong size or depth) is bad input, one line naming the file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from pathlib import Path

import numpy as np
import torch

from . import derive
from .conditions import TestConditions
from .delivery import read_decoded, scan
from .environment import fingerprint
from .errors import InputError
from .images import TestImage, load_images
from .metrics import info as metric_info
from .model.report import (AnchorInfo, NotMeasured, NotMeasuredCode, PartCount, Picture, RateResult, Report)
from .quality import image_quality, psnr_rgb
from .submission import files_fingerprint
from .version import SCHEMA_VERSION, __version__

ENTRY = "delivery: bitstreams and decoded pictures (no program run)"
NOT_RUN = "anchor delivery: no program run"
COMPLEXITY = "an anchor's report: compression figures only, its complexity is not part of the comparison"


def _na(reason: str = NOT_RUN) -> NotMeasured:
    return NotMeasured(code=NotMeasuredCode.NOT_APPLICABLE, reason=reason)


def _no_count() -> PartCount:
    return PartCount(macs=0, complete=False, unseen=[NOT_RUN + "; MACs not applicable"])


def _decoded(path: Path, img: TestImage) -> np.ndarray:
    """The delivered decoded picture as uint8 [H, W, 3]; bad input (naming the file) unless 8-bit RGB of the
    original's size."""
    try:
        return read_decoded(path, img.width, img.height)
    except ValueError as exc:
        raise InputError(path, None, str(exc).removeprefix(f"{path}: ")) from None


def picture(img: TestImage, bitstream: Path, decoded: Path | None) -> Picture:
    """One original at one rate: the bitstream's rate, and the metrics of the decoded picture where delivered."""
    bits = bitstream.read_bytes()
    if not bits:
        raise InputError(bitstream, None, "empty bitstream")
    quality: dict[str, float | None] = {}
    psnr = decoded_sha256 = None
    if decoded is not None:
        arr = _decoded(decoded, img)
        x = img.tensor()
        u8 = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).unsqueeze(0)
        x_hat = u8.float().div(255.0)           # to_uint8 gives the same code values back
        psnr = psnr_rgb(x, x_hat)
        quality = image_quality(x, x_hat)
        decoded_sha256 = hashlib.sha256(u8.contiguous().numpy().tobytes()).hexdigest()
    return Picture(name=img.name, width=img.width, height=img.height, bytes=len(bits),
                   bpp=8.0 * len(bits) / (img.width * img.height), psnr_rgb=psnr,
                   bitstream_sha256=hashlib.sha256(bits).hexdigest(), decoded_sha256=decoded_sha256,
                   counts={"encoder": _no_count(), "decoder": _no_count()}, quality=quality)


def read_delivery(bitstreams: Path, decoded: Path | None, cond: TestConditions,
                  rates: list[float] | None = None) -> list[RateResult]:
    """One RateResult per rate folder of the delivery (the test conditions' target rates, or `rates`)."""
    images = load_images(cond.images)
    targets = list(cond.target_rates)
    folders, dec, problems = scan(bitstreams, decoded, [i.name for i in images], targets)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        raise InputError(first["file"], None, first["message"] + more)
    if not folders:
        raise InputError(bitstreams, "--bitstreams", "holds no rate folder (expected <target>/<stem>.bin, targets "
                         + ", ".join(f"{t:g}" for t in targets) + ")")
    if rates:
        wanted = {}
        for w in rates:
            t = next((t for t in folders if derive.same_rate(t, w)), None)
            if t is None:
                raise InputError("command line", "--rates", f"no rate folder for {w:g} bpp in {bitstreams} "
                                 "(it has " + ", ".join(f"{t:g}" for t in sorted(folders)) + ")")
            wanted[t] = folders[t]
        folders = wanted
    # The whole layout is checked before any metric is computed: a bad file costs no waiting.
    plan: list[tuple[float, list[tuple[TestImage, Path, Path | None]]]] = []
    for target in sorted(folders):
        folder, dfolder = folders[target], dec[target]
        items = []
        for img in images:
            bin_path = folder / f"{img.name}.bin"
            if not bin_path.is_file():
                raise InputError(bin_path, None, "missing (each rate folder holds a bitstream of every original)")
            if bin_path.stat().st_size == 0:
                raise InputError(bin_path, None, "empty bitstream")
            png = dfolder / f"{img.name}.png" if dfolder is not None else None
            png = png if png is not None and png.is_file() else None
            if png is not None:
                _decoded(png, img)
            items.append((img, bin_path, png))
        plan.append((target, items))
    out = []
    for index, (target, items) in enumerate(plan):
        pictures = [picture(img, b, png) for img, b, png in items]
        nm = {k: _na() for k in ("params", "precision", "macs_encode", "macs_decode", "gpu")}
        if any(not p.quality for p in pictures):
            missing = [p.name for p in pictures if not p.quality]
            nm["quality"] = NotMeasured(code=NotMeasuredCode.NOT_AVAILABLE,
                                        reason="no decoded picture delivered for " + ", ".join(missing))
        out.append(RateResult(index=index, target_bpp=target, images=pictures, not_measured=nm))
    return out


def delivery_report(bitstreams: Path, decoded: Path | None, cond: TestConditions, name: str,
                    substitute_for: str, note: str = "", rates: list[float] | None = None) -> Report:
    """The anchor report of a delivery (same schema as `jpegai-profile anchors` writes, marked `anchor`)."""
    results = read_delivery(bitstreams, decoded, cond, rates)
    total, each = files_fingerprint(bitstreams)
    directory = str(bitstreams.resolve())
    source = f"delivery {directory}" + (f", decoded pictures {decoded.resolve()}" if decoded is not None else "")
    report = Report(
        submission={"directory": directory, "proponent": name, "codec": name, "version": "",
                    "entry": ENTRY, "precision": {"encoder": "not applicable", "decoder": "not applicable"},
                    "rates": [{"index": r.index, "target_bpp": r.target_bpp} for r in results],
                    "files_sha256": total, "files": each},
        conditions=cond.to_dict(), options={"rates": [r.target_bpp for r in results], "devices": []},
        environment=fingerprint(total, None), metrics=metric_info(),
        rates=results, not_measured={"complexity": _na(COMPLEXITY)},
        run={"state": "complete", "planned_rates": [r.target_bpp for r in results]},
        anchor=AnchorInfo(substitute_for=substitute_for, program=source, chroma="as delivered", note=note),
        schema_version=SCHEMA_VERSION, tool={"version": __version__},
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    return derive.with_summary(report)
