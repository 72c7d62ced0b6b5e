"""A codec that leaks state between calls through module globals: what worker isolation must contain.

Every encode appends a 256 MiB block (written) to a module-level list and writes into the bitstream one
byte per encode this *process* has run before it. In a fresh worker per rate point the first encode of
every rate point returns 4 + 0 bytes and each worker leaks the same; sharing a process would make the
second rate point's first bitstream longer and its worker's memory larger.
It also imports PyYAML, which the suite does not import before building a codec: the environment
fingerprint must list it among the packages the submission imported.
"""

from __future__ import annotations

import struct

import numpy as np
import torch
import yaml  # noqa: F401  (imported for the fingerprint test)
from torch import nn

LEAK_MIB = 256  # far above the ~50 MiB RSS spread between two fresh workers
_LEAK: list[np.ndarray] = []
_ENCODES = 0


class LeakyCodec:
    def __init__(self, device):
        self.encoder = nn.Identity()
        self.decoder = nn.Identity()
        self.device = device
        self.weights_source = "no weights"

    def encode(self, image):
        global _ENCODES
        h, w = image.shape[-2:]
        bits = struct.pack(">HH", h, w) + b"\x01" * _ENCODES
        _ENCODES += 1
        _LEAK.append(np.ones(LEAK_MIB * 1024 * 1024, dtype=np.uint8))
        return bits

    def decode(self, bits):
        h, w = struct.unpack(">HH", bits[:4])
        return torch.full((1, 3, h, w), 0.5, device=self.device)


def build(rate, device):
    return LeakyCodec(device)
