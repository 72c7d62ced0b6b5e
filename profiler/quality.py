"""Quality of a reconstruction and of a rate-distortion curve: PSNR (RGB, Y), MS-SSIM, BD-rate.

Every picture metric is computed on the 8-bit pictures (the float reconstruction rounded to uint8, as a
decoded picture written to PNG would hold), peak 255.

- PSNR-RGB: one MSE over all three components.
- PSNR-Y: luma of ITU-R BT.709, Y = 0.2126 R + 0.7152 G + 0.0722 B, full range, computed in double
  precision from the 8-bit RGB values (no rounding of Y, no studio-range offset).
- MS-SSIM: `pytorch_msssim.ms_ssim` on RGB, data_range 255, its default 5 scales and 11×11 Gaussian
  window. Five scales need the smaller side > (11 − 1) × 2⁴ = 160 pixels; for smaller pictures it is
  not defined and the functions return None (never a made-up figure).
- BD-rate: the `bjontegaard` package with pchip interpolation, as the JPEG AI reference scripts use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

# BT.709 luma weights.
BT709 = (0.2126, 0.7152, 0.0722)

# pytorch_msssim's defaults: 5 scales, window 11 → the smaller side must exceed (11 - 1) * 2**4.
MS_SSIM_MIN_SIDE = (11 - 1) * 2 ** 4 + 1

# pchip BD-rate needs this many points per curve (as in the JPEG AI scripts: 4 or more rate points).
BD_MIN_POINTS = 4


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[1, 3, H, W] float in [0, 1] → uint8 values, as a decoded picture written to PNG would hold."""
    return x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)


def _psnr_from_mse(mse: float) -> float:
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def psnr_rgb(original: torch.Tensor, decoded: torch.Tensor) -> float:
    """PSNR over all three RGB components of the 8-bit pictures (peak 255)."""
    a = to_uint8(original).double()
    b = to_uint8(decoded).double().to(a.device)
    return _psnr_from_mse(torch.mean((a - b) ** 2).item())


def luma_bt709(x8: torch.Tensor) -> torch.Tensor:
    """Y of BT.709 from 8-bit RGB values [N, 3, H, W] (any real dtype), in double precision."""
    w = torch.tensor(BT709, dtype=torch.float64, device=x8.device).view(1, 3, 1, 1)
    return (x8.double() * w).sum(dim=1)


def psnr_y(original: torch.Tensor, decoded: torch.Tensor) -> float:
    """PSNR of the BT.709 luma of the 8-bit pictures (peak 255)."""
    a = luma_bt709(to_uint8(original))
    b = luma_bt709(to_uint8(decoded).to(original.device))
    return _psnr_from_mse(torch.mean((a - b) ** 2).item())


def ms_ssim(original: torch.Tensor, decoded: torch.Tensor) -> float | None:
    """MS-SSIM of the 8-bit RGB pictures, or None when the picture is too small for five scales."""
    from pytorch_msssim import ms_ssim as _ms_ssim

    if min(original.shape[-2:]) < MS_SSIM_MIN_SIDE:
        return None
    a = to_uint8(original).float().cpu()
    b = to_uint8(decoded).float().cpu()
    return float(_ms_ssim(a, b, data_range=255.0, size_average=True).item())


def image_quality(original: torch.Tensor, decoded: torch.Tensor) -> dict[str, float | None]:
    """The extra per-image metrics recorded in `Picture.quality`: MS-SSIM (RGB) and the JPEG AI metric
    set of profiler/metrics.py (PSNR-Y/U/V, MS-SSIM and the others on Y), on every core."""
    from .metrics import compute

    return {"ms_ssim": ms_ssim(original, decoded), **compute(to_uint8(original), to_uint8(decoded))}


@dataclass(frozen=True)
class BdRate:
    """A BD-rate in percent (negative: the test curve needs fewer bits), or why it was not computed."""

    percent: float | None
    reason: str = ""

    def to_dict(self) -> dict:
        return {"percent": self.percent, "reason": self.reason}


def bd_rate(rate_anchor, dist_anchor, rate_test, dist_test, min_points: int = BD_MIN_POINTS) -> BdRate:
    """BD-rate of the test curve against the anchor (pchip, `bjontegaard` package).

    The points are sorted by rate. pchip interpolates the log-rate as a function of the distortion, so
    each curve's distortion must strictly increase with its rate; otherwise, or with fewer than
    `min_points` points, the BD-rate is not defined and the reason says why. Two identical curves
    have a BD-rate of exactly 0 whatever their shape (the integrals are equal), so that case needs no
    interpolation.
    """
    import warnings

    import bjontegaard

    ra, da, rt, dt = (np.asarray(v, dtype=np.float64) for v in (rate_anchor, dist_anchor, rate_test, dist_test))
    if len(ra) != len(da) or len(rt) != len(dt):
        return BdRate(None, "rate and distortion lists differ in length")
    if min(len(ra), len(rt)) < min_points:
        return BdRate(None, f"BD-rate needs at least {min_points} rate points per curve (pchip), "
                            f"got {min(len(ra), len(rt))}")
    for name, arr in (("rate", np.concatenate([ra, rt])), ("distortion", np.concatenate([da, dt]))):
        if not np.all(np.isfinite(arr)):
            return BdRate(None, f"a {name} is not finite (e.g. a lossless picture has infinite PSNR)")
    if np.any(ra <= 0) or np.any(rt <= 0):
        return BdRate(None, "a rate is not positive")
    oa, ot = np.argsort(ra, kind="stable"), np.argsort(rt, kind="stable")
    ra, da, rt, dt = ra[oa], da[oa], rt[ot], dt[ot]
    if np.array_equal(ra, rt) and np.array_equal(da, dt):
        return BdRate(0.0, "identical curves")
    for name, d in (("anchor", da), ("test", dt)):
        if np.any(np.diff(d) <= 0):
            return BdRate(None, f"the {name} curve's quality does not strictly increase with its rate "
                                f"({', '.join(f'{v:.3f}' for v in d)})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = bjontegaard.bd_rate(ra, da, rt, dt, method="pchip", require_matching_points=False)
        except (ValueError, AssertionError) as exc:
            return BdRate(None, f"bjontegaard: {exc}")
    value = float(value)
    if not math.isfinite(value):
        return BdRate(None, "the curves do not overlap")
    return BdRate(value)
