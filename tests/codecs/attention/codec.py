"""A codec whose decoder costs more per pixel on larger pictures: attention over all latent positions.

encoder: Conv2d(3→4, k8, s8) (patchify; the picture is padded to a multiple of 8) → round → int8 → zlib.
decoder: zlib → int8 → self-attention of every latent position with every other (q = k = v = y, no
         weights: L·S·E + L·S·E MACs with L = S = positions, E = 4) → ConvTranspose2d(4→3, k8, s8) → crop.
Per pixel the attention costs 8·(positions)² / (W·H), which grows with the picture: the worst-case
decoder is at the largest counted resolution, not at a test picture. Networks are exposed for meta
counting (profiler/codec.py CountableNetworks).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 4, 8, stride=8)

    def forward(self, x):
        return self.patch(x)


class Attention(nn.Module):
    def forward(self, y):
        b, c, h, w = y.shape
        t = y.flatten(2).transpose(1, 2)                       # [b, h·w, c]
        a = torch.softmax(torch.matmul(t, t.transpose(1, 2)) / c ** 0.5, dim=-1)
        return torch.matmul(a, t).transpose(1, 2).reshape(b, c, h, w)


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = Attention()
        self.unpatch = nn.ConvTranspose2d(4, 3, 8, stride=8)

    def forward(self, y):
        return self.unpatch(self.attn(y))


class AttentionCodec:
    def __init__(self, device):
        torch.manual_seed(0)
        self.encoder = Encoder().to(device).eval()
        self.decoder = Decoder().to(device).eval()
        self.device = device
        self.weights_source = "random initialisation (seed 0)"

    @staticmethod
    def _pad(x):
        h, w = x.shape[-2:]
        return F.pad(x, (0, -w % 8, 0, -h % 8), mode="replicate")

    def encode_networks(self, x):
        return self.encoder(self._pad(x))

    def decode_networks(self, y):
        return self.decoder(y)

    @torch.no_grad()
    def encode(self, image):
        h, w = image.shape[-2:]
        y = (self.encoder(self._pad(image)) * 8).round().clamp(-127, 127).to(torch.int8)
        return struct.pack(">HH", h, w) + zlib.compress(y.cpu().numpy().tobytes(), 9)

    @torch.no_grad()
    def decode(self, bits):
        h, w = struct.unpack(">HH", bits[:4])
        yh, yw = (h + 7) // 8, (w + 7) // 8
        y = np.frombuffer(zlib.decompress(bits[4:]), dtype=np.int8).reshape(1, 4, yh, yw)
        x = self.decoder(torch.from_numpy(y.copy()).float().to(self.device) / 8)
        return x[..., :h, :w].clamp(0, 1)


def build(rate, device):
    return AttentionCodec(device)
