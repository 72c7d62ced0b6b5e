"""The JPEG AI objective metric set on the 8-bit pictures, from maintained packages, with their conventions.

Each metric is computed on the 8-bit RGB pictures (the decoder's output rounded to uint8, as a PNG holds
it), converted to Y'CbCr by ITU-R BT.709 in double precision, full range, not rounded:

    Y = 0.2126 R + 0.7152 G + 0.0722 B,  Cb = (B − Y) / 1.8556 + 128,  Cr = (R − Y) / 1.5748 + 128.

The JPEG AI quality assessment framework (jpeg-ai-qaf) is the reference implementation; it is not
reachable from here, so where its convention is not known the assumption is stated in the metric's
`conventions` (and lands in the report's `metrics` map). A metric whose package is missing, or that would
need weights downloaded at run time, is *not measured*, with the reason — never replaced by a guess.

`compute` is called by the worker after a picture's counted decode and before its warm-ups and timed
calls, so no metric runs inside a timed region; it uses every core the process may run on (`all_cores`)
and gives the thread count back afterwards.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from typing import Callable

import numpy as np
import torch

BT709_KR, BT709_KB = 0.2126, 0.0722
BT709_KG = 1 - BT709_KR - BT709_KB
CB_SCALE, CR_SCALE = 2 * (1 - BT709_KB), 2 * (1 - BT709_KR)     # 1.8556, 1.5748

Y_PLANE = "Y of BT.709 (full range, unrounded double) from the 8-bit RGB pictures"
RANGE_01 = "[0, 1] (Y / 255), data_range 1"
RANGE_255 = "[0, 255]"


def ycbcr_bt709(rgb8: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] 8-bit RGB values (any real dtype) → [N, 3, H, W] Y, Cb, Cr in double, full range."""
    x = rgb8.double()
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    y = BT709_KR * r + BT709_KG * g + BT709_KB * b
    return torch.stack([y, (b - y) / CB_SCALE + 128, (r - y) / CR_SCALE + 128], dim=1)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a - b) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def _y01(p: torch.Tensor) -> torch.Tensor:
    return (p[:, :1] / 255.0).float()


def _ms_ssim_y(a, b):
    import piq
    return piq.multi_scale_ssim(_y01(a), _y01(b), data_range=1.0).item()


def _iw_ssim(a, b):
    import piq
    return piq.information_weighted_ssim(_y01(a), _y01(b), data_range=1.0).item()


def _vifp(a, b):
    import piq
    return piq.vif_p(_y01(a), _y01(b), data_range=1.0).item()


def _fsim(a, b):
    import piq
    return piq.fsim(_y01(a), _y01(b), data_range=1.0, chromatic=False).item()


def _import_quiet(name: str):
    """Import a module whose import prints notices (psnr_hvsm prints about optional backends): never on
    stdout, which belongs to the command line's output."""
    import contextlib
    import importlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return importlib.import_module(name)


def _psnr_hvs_m(a, b):
    import warnings

    psnr_hvsm = _import_quiet("psnr_hvsm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # its tile variance divides 0 by 0 on flat tiles, then masks it
        h, w = (a.shape[-2] // 8) * 8, (a.shape[-1] // 8) * 8     # whole 8×8 blocks, as the original code
        _, hvsm = psnr_hvsm.psnr_hvs_hvsm(a[0, 0, :h, :w].numpy() / 255.0, b[0, 0, :h, :w].numpy() / 255.0)
    return float(hvsm)


@lru_cache(maxsize=1)
def _vmaf_model():
    from vmaf_torch import VMAF
    return VMAF(temporal_pooling=False, enable_motion=False, clip_score=True).eval()


def _vmaf(a, b):
    with torch.no_grad():
        return float(_vmaf_model()(a[:, :1].float(), b[:, :1].float()).reshape(-1)[0].item())


def pyiqa_arch(module: str):
    """One of pyiqa's metric modules (`pyiqa.archs.<module>`), imported without running pyiqa's package
    `__init__` files: those import its whole model zoo (opencv, timm, transformers, a model-hub client).
    The metric modules used here need torch, torchvision, numpy and scipy only. Where pyiqa was already
    imported the usual way, that import is used."""
    import importlib
    import importlib.util
    import sys
    import types

    if "pyiqa" not in sys.modules:
        spec = importlib.util.find_spec("pyiqa")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("No module named 'pyiqa'")
        root = list(spec.submodule_search_locations)[0]
        for name in ("pyiqa", "pyiqa.utils", "pyiqa.archs"):
            stand_in = types.ModuleType(name)
            stand_in.__path__ = [os.path.join(root, *name.split(".")[1:])]
            sys.modules.setdefault(name, stand_in)
    return importlib.import_module(f"pyiqa.archs.{module}")


@lru_cache(maxsize=1)
def _nlpd_model():
    # channels=3, test_y_channel=False on three copies of our Y: pyiqa's own Y would be BT.601 studio range.
    return pyiqa_arch("nlpd_arch").NLPD(channels=3, test_y_channel=False).eval()


def _nlpd(a, b):
    y3 = lambda p: _y01(p).repeat(1, 3, 1, 1)    # noqa: E731 — the same plane in each channel: the mean is Y's
    return float(_nlpd_model()(y3(a), y3(b)).reshape(-1)[0].item())


@dataclass(frozen=True)
class Metric:
    key: str                        # Picture.quality key
    name: str
    package: str                    # distribution name ("" for by hand)
    module: str                     # what must import
    plane: str
    range: str
    conventions: str
    fn: Callable[[torch.Tensor, torch.Tensor], float]
    min_side: int = 1               # smaller pictures: not defined (None)
    unavailable: str = ""           # a standing reason it cannot be had


METRICS: tuple[Metric, ...] = (
    Metric("psnr_y", "PSNR-Y", "", "", "Y (BT.709)", RANGE_255,
           "by hand: 10·log10(255² / MSE) on the unrounded Y; peak 255", lambda a, b: _psnr(a[:, 0], b[:, 0])),
    Metric("psnr_u", "PSNR-U (Cb)", "", "", "Cb (BT.709)", RANGE_255,
           "by hand: 10·log10(255² / MSE) on the unrounded Cb = (B − Y) / 1.8556 + 128; 4:4:4, peak 255",
           lambda a, b: _psnr(a[:, 1], b[:, 1])),
    Metric("psnr_v", "PSNR-V (Cr)", "", "", "Cr (BT.709)", RANGE_255,
           "by hand: 10·log10(255² / MSE) on the unrounded Cr = (R − Y) / 1.5748 + 128; 4:4:4, peak 255",
           lambda a, b: _psnr(a[:, 2], b[:, 2])),
    Metric("ms_ssim_y", "MS-SSIM", "piq", "piq", Y_PLANE, RANGE_01,
           "assumed: luma only; piq defaults (5 scales, 11×11 Gaussian σ 1.5, Wang 2003 weights); enters "
           "BD-rates in dB, −10·log10(1 − v). The older `ms_ssim` key is RGB (pytorch_msssim)",
           _ms_ssim_y, min_side=161),
    Metric("iw_ssim", "IW-SSIM", "piq", "piq", Y_PLANE, RANGE_01,
           "assumed: luma only; piq `information_weighted_ssim` defaults (5 scales, parent band on); "
           "enters BD-rates in dB, −10·log10(1 − v)", _iw_ssim, min_side=161),
    Metric("vifp", "VIFP", "piq", "piq", Y_PLANE, RANGE_01,
           "assumed: luma only; pixel-domain VIF, σ²_n = 2 (piq `vif_p`, the paper's value); linear",
           _vifp, min_side=41),
    Metric("fsim", "FSIM", "piq", "piq", Y_PLANE, RANGE_01,
           "assumed: luma only (FSIM, not FSIMc); piq defaults (4 scales, 4 orientations, its down-scaling of "
           "pictures over 256 px); linear", _fsim),
    Metric("nlpd", "NLPD", "pyiqa", "pyiqa.archs.nlpd_arch", Y_PLANE, RANGE_01,
           "assumed: luma only; pyiqa's NLPD (Laparra 2016: 6-level Laplacian pyramid, its fixed divisive-"
           "normalisation filters, no weights), fed our Y rather than its BT.601 studio-range Y; lower is "
           "better: enters BD-rates negated", _nlpd, min_side=64),
    Metric("psnr_hvs_m", "PSNR-HVS-M", "psnr-hvsm", "psnr_hvsm", Y_PLANE, RANGE_01,
           "assumed: luma only; psnr-hvsm's 8×8 DCT with contrast masking (Ponomarenko 2007), peak 1 on "
           "Y / 255, whole 8×8 blocks only (the right and bottom rest is left out, as in the authors' code); "
           "dB; identical pictures give 100 dB (the package's cap)", _psnr_hvs_m, min_side=8),
    Metric("vmaf", "VMAF", "vmaf-torch", "vmaf_torch", "Y (BT.709), unrounded", RANGE_255,
           "assumed: one frame, motion off (a still picture), vmaf_v0.6.1 model bundled with vmaf-torch, score "
           "clipped to [0, 100] (a picture against itself scores 97.4, not 100); not libvmaf itself (Debian's ffmpeg is built without it); linear",
           _vmaf, min_side=32),
)
BY_KEY = {m.key: m for m in METRICS}


def version(package: str) -> str | None:
    try:
        return metadata.version(package) if package else None
    except metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=None)
def unavailable(key: str) -> str:
    """Why the metric cannot be had here, or '' when it can."""
    m = BY_KEY[key]
    if m.unavailable:
        return m.unavailable
    if m.module:
        try:
            if m.module.startswith("pyiqa.archs."):
                pyiqa_arch(m.module.rsplit(".", 1)[1])
            else:
                _import_quiet(m.module)
        except Exception as exc:   # noqa: BLE001 — any import failure means the metric is not there
            return f"not measured: {m.package} cannot be imported ({type(exc).__name__}: {exc})"
    return ""


def unavailable_reasons() -> dict[str, str]:
    """The metrics this process cannot compute, key → why (`unavailable`); {} when it can compute all."""
    return {m.key: why for m in METRICS if (why := unavailable(m.key))}


def info(unavailable_from: dict[str, str] | None = None, *, pending: bool = False) -> dict[str, dict]:
    """Picture.quality key → how the metric is computed (the report's `metrics` map, as MetricInfo dicts).

    Whether each is measured is decided where the metrics run: `unavailable_from` (the workers'
    `unavailable_reasons`, merged) where given, else this process's own imports (which cost ~2 s: piq
    brings torchvision), or, with `pending`, not yet known (None) and nothing imported: the command line
    starts its report before any worker has said.
    """
    out = {}
    for m in METRICS:
        if pending:
            why, measured = "", None
        else:
            why = unavailable(m.key) if unavailable_from is None else unavailable_from.get(m.key, "")
            measured = not why
        out[m.key] = {"name": m.name, "package": m.package or "by hand", "version": version(m.package),
                      "plane": m.plane, "range": m.range,
                      "conventions": m.conventions + (f"; not defined below {m.min_side}×{m.min_side} pixels"
                                                      if m.min_side > 1 else ""),
                      "measured": measured, "reason": why}
    out["psnr_rgb"] = {"name": "PSNR-RGB", "package": "by hand", "version": None, "plane": "R, G, B",
                       "range": RANGE_255, "conventions": "one MSE over the three components; peak 255"}
    out["ms_ssim"] = {"name": "MS-SSIM (RGB)", "package": "pytorch-msssim", "version": version("pytorch-msssim"),
                      "plane": "R, G, B", "range": RANGE_255,
                      "conventions": "the suite's earlier MS-SSIM: RGB, pytorch_msssim defaults; not defined "
                                     "below 161×161 pixels"}
    return out


def compute(original_u8: torch.Tensor, decoded_u8: torch.Tensor,
            keys: tuple[str, ...] | None = None) -> dict[str, float | None]:
    """Every available metric of the pair of 8-bit RGB pictures [1, 3, H, W] (None: not defined or not measured)."""
    a = ycbcr_bt709(original_u8.cpu())
    b = ycbcr_bt709(decoded_u8.cpu())
    side = min(a.shape[-2:])
    out: dict[str, float | None] = {}
    # The thread count is the caller's: the worker runs this as an untimed step on the idle cores
    # (profiler/untimed.py), and gives the timed calls theirs back afterwards.
    with torch.no_grad():
        for m in METRICS:
            if keys is not None and m.key not in keys:
                continue
            if unavailable(m.key) or side < m.min_side:
                out[m.key] = None
                continue
            try:
                v = float(m.fn(a, b))
            except (RuntimeError, ValueError, ZeroDivisionError):
                # Not defined for this pair (IW-SSIM's covariance of a flat picture is singular): no value
                # for this picture, never a failed rate point.
                v = math.nan
            out[m.key] = v if not math.isnan(v) else None
    return out


def cost_inputs(width: int, height: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A reproducible pair of 8-bit pictures (a smooth picture and a noisy copy) for benchmarks."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([128 + 100 * np.sin(xx / 17.0 + c) * np.cos(yy / 23.0) for c in range(3)])
    noisy = base + g.normal(0, 6, base.shape)
    to8 = lambda v: torch.from_numpy(np.clip(np.round(v), 0, 255).astype(np.uint8))[None]   # noqa: E731
    return to8(base), to8(noisy)
