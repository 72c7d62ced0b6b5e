"""A rate-controlled codec for the compliance tests: it meets any target rate, so it can pass every rule.

encoder: 1×1 colour transform (an orthonormal RGB → opponent matrix) → block means over f×f blocks →
         uniform quantiser of step s → int16 → zlib. Rate control: of a ladder of (f, s) pairs, the one
         with the best PSNR whose bitstream fits target × W × H / 8 bytes (the coarsest when none fits).
decoder: zlib → × s → nearest upsampling → inverse colour transform (a 1×1 ConvTranspose2d) → crop → clamp.

Options (per rate point), each to make one rule fail for one reason:
- `budget_scale` (default 1.0): the rate control aims at target × budget_scale (> 1.1 overshoots);
- `float_entropy` (default false): the quantised symbols are offset by floor(p × 2²⁴) mod 4, where p is
  the float output of a transposed convolution computed on both sides. The decoder recomputes p in its own
  float arithmetic: on another device (or with oneDNN off) some offsets differ and the symbols are wrong —
  the desynchronisation of a float entropy model (Ballé et al. 2019).
"""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

BLOCKS = (32, 16, 8, 4, 2, 1)
STEPS = (1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64)
LADDER = tuple((f, s) for f in BLOCKS for s in STEPS)
_HEADER = struct.Struct(">HHB")

# Orthonormal colour transform (rows: luma-like, two opponent axes).
COLOUR = torch.tensor([[1 / math.sqrt(3)] * 3,
                       [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2)],
                       [1 / math.sqrt(6), -2 / math.sqrt(6), 1 / math.sqrt(6)]])


def _offset_field(deconv: nn.ConvTranspose2d, shape: tuple[int, int]) -> torch.Tensor:
    """floor(p × 2^24) mod 4 over a grid of `shape`: depends on the float rounding of `deconv`."""
    h, w = shape
    g = torch.Generator().manual_seed(1234)
    z = torch.rand(1, 8, (h + 1) // 2 + 1, (w + 1) // 2 + 1, generator=g)
    p = deconv(z.to(deconv.weight.device))[..., :h, :w]
    return torch.floor(p * 2.0 ** 24).remainder(4).to(torch.int64).cpu()


class Encoder(nn.Module):
    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        self.colour = nn.Conv2d(3, 3, 1, bias=False)
        self.colour.weight.data.copy_(COLOUR.view(3, 3, 1, 1))
        self.entropy_model = deconv


class Decoder(nn.Module):
    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        self.inverse = nn.ConvTranspose2d(3, 3, 1, bias=False)
        self.inverse.weight.data.copy_(COLOUR.view(3, 3, 1, 1))   # orthonormal: the inverse is the transpose
        self.entropy_model = deconv


class RateControlledCodec:
    def __init__(self, target_bpp: float, device, budget_scale: float = 1.0, float_entropy: bool = False):
        torch.manual_seed(0)
        deconv = nn.ConvTranspose2d(8, 3, 4, stride=2, padding=1)
        self.encoder = Encoder(deconv).to(device).eval()
        self.decoder = Decoder(deconv).to(device).eval()
        self.target_bpp = target_bpp
        self.budget_scale = budget_scale
        self.float_entropy = float_entropy
        self.device = device
        self.weights_source = "fixed transforms (no training needed)"

    def _levels(self, y: torch.Tensor, f: int, step: float) -> torch.Tensor:
        m = F.avg_pool2d(y, f, ceil_mode=True) if f > 1 else y
        return torch.round(m / step).to(torch.int64).cpu()

    def _pack(self, q: torch.Tensor, h: int, w: int, k: int) -> bytes:
        if self.float_entropy:
            with torch.no_grad():
                q = q + _offset_field(self.encoder.entropy_model, tuple(q.shape[-2:]))
        return _HEADER.pack(h, w, k) + zlib.compress(q.to(torch.int16).numpy().tobytes(), 6)

    def _reconstruct(self, q: torch.Tensor, f: int, step: float, h: int, w: int) -> torch.Tensor:
        y = q.to(self.device, torch.float32) * step
        if f > 1:
            y = y.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)
        return self.decoder.inverse(y[..., :h, :w]).clamp(0, 1)

    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> bytes:
        h, w = image.shape[-2:]
        y = self.encoder.colour(image.to(self.device))
        budget = self.target_bpp * self.budget_scale * h * w / 8
        best = None
        for k, (f, step) in enumerate(LADDER):
            q = self._levels(y, f, step)
            bits = self._pack(q, h, w, k)
            if len(bits) > budget and best is not None:
                continue
            # The colour transform is orthonormal: the error in its domain is the picture's (before clamping).
            yq = q.to(y.device, torch.float32) * step
            if f > 1:
                yq = yq.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)
            mse = torch.mean((yq[..., :h, :w] - y) ** 2).item()
            if best is None or (len(bits) <= budget and (best[2] > budget or mse < best[0])):
                best = (mse, bits, len(bits))
        return best[1]

    @torch.no_grad()
    def decode(self, bits: bytes) -> torch.Tensor:
        h, w, k = _HEADER.unpack(bits[:_HEADER.size])
        f, step = LADDER[k]
        qh, qw = math.ceil(h / f), math.ceil(w / f)
        q = torch.from_numpy(np.frombuffer(zlib.decompress(bits[_HEADER.size:]), dtype=np.int16)
                             .astype(np.int64).reshape(1, 3, qh, qw))
        if self.float_entropy:
            q = q - _offset_field(self.decoder.entropy_model, (qh, qw))
        return self._reconstruct(q, f, step, h, w)


def build(rate, device):
    return RateControlledCodec(rate.target_bpp, device, float(rate.options.get("budget_scale", 1.0)),
                               bool(rate.options.get("float_entropy", False)))
