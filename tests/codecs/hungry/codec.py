"""A codec whose encode holds a 128 MiB tensor and whose decode holds a 384 MiB one, both written.

`torch.ones` writes every page, so each call's resident set really grows by that much; the worker's
per-call peak RSS must show it, and the decode peak must not include the encode's (the high-water mark
is reset before each part).
"""

from __future__ import annotations

import struct

import torch
from torch import nn

MIB = 1024 * 1024
ENCODE_MIB = 128
DECODE_MIB = 384


class HungryCodec:
    def __init__(self, device):
        self.encoder = nn.Identity()
        self.decoder = nn.Identity()
        self.device = device
        self.weights_source = "no weights"

    def encode(self, image):
        scratch = torch.ones(ENCODE_MIB * MIB // 4, dtype=torch.float32, device=self.device)
        h, w = image.shape[-2:]
        bits = struct.pack(">HHf", h, w, float(scratch[-1]))
        del scratch
        return bits

    def decode(self, bits):
        scratch = torch.ones(DECODE_MIB * MIB // 4, dtype=torch.float32, device=self.device)
        h, w, v = struct.unpack(">HHf", bits[:8])
        out = torch.full((1, 3, h, w), 0.5 * v * float(scratch[-1]), device=self.device)
        del scratch
        return out


def build(rate, device):
    return HungryCodec(device)
