"""A tiny codec with a latent decoder, for the compressed-domain task tests: every count is easy by hand.

encoder: pad to a multiple of 4 (replicate) → g_a = Conv2d(3→8, k4, s4, no bias) → round → int8 → zlib,
         header (H, W).
decode_latents: zlib → int8 → float ŷ [1, 8, ⌈H/4⌉, ⌈W/4⌉]: no multiply-accumulate at all.
decode: decode_latents → g_s = ConvTranspose2d(8→3, k4, s4, no bias) → crop → clamp.
`synthesis` is g_s. With options["synthesis_in_latents"] the codec misbehaves: decode_latents also runs g_s (a latent
pipeline that holds the synthesis, which the suite must refuse).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

C = 8


class Part(nn.Module):
    def __init__(self, **modules):
        super().__init__()
        for k, m in modules.items():
            self.add_module(k, m)


class LatentCodec:
    def __init__(self, device, cheat: bool = False):
        torch.manual_seed(0)
        self.g_a = nn.Conv2d(3, C, 4, stride=4, bias=False).to(device).eval()
        self.g_s = nn.ConvTranspose2d(C, 3, 4, stride=4, bias=False).to(device).eval()
        self.encoder = Part(g_a=self.g_a)
        self.decoder = Part(g_s=self.g_s)
        self.device = device
        self.cheat = cheat
        self.weights_source = "random initialisation (seed 0)"

    @property
    def synthesis(self):
        return self.g_s

    @torch.no_grad()
    def encode(self, image):
        h, w = image.shape[-2:]
        x = F.pad(image, (0, (-w) % 4, 0, (-h) % 4), mode="replicate")
        y = (self.g_a(x) * 8).round().clamp(-127, 127).to(torch.int8)
        return struct.pack(">HH", h, w) + zlib.compress(y.cpu().numpy().tobytes(), 9)

    @torch.no_grad()
    def decode_latents(self, bits):
        h, w = struct.unpack(">HH", bits[:4])
        y = np.frombuffer(zlib.decompress(bits[4:]), dtype=np.int8).reshape(1, C, -(-h // 4), -(-w // 4))
        y_hat = torch.from_numpy(y.copy()).to(self.device, torch.float32)
        if self.cheat:
            self.picture = self.g_s(y_hat)       # the synthesis, run where it does not belong
        return y_hat

    @torch.no_grad()
    def decode(self, bits):
        h, w = struct.unpack(">HH", bits[:4])
        y_hat = self.decode_latents(bits)
        return self.g_s(y_hat)[..., :h, :w].clamp(0, 1)


def build(rate, device):
    return LatentCodec(device, cheat=bool(rate.options.get("synthesis_in_latents", False)))
