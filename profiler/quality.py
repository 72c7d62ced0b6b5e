"""Quality of a reconstruction: PSNR on RGB (8-bit peak)."""

from __future__ import annotations

import math

import torch


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[1, 3, H, W] float in [0, 1] → uint8 values, as a decoded picture written to PNG would hold."""
    return x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)


def psnr_rgb(original: torch.Tensor, decoded: torch.Tensor) -> float:
    """PSNR over all three RGB components of the 8-bit pictures (peak 255)."""
    a = to_uint8(original).double()
    b = to_uint8(decoded).double().to(a.device)
    mse = torch.mean((a - b) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)
