"""A codec whose encode sleeps 50 ms and whose decode sleeps 200 ms: timing has a known answer.

`time.sleep` never returns early, so a correct timer reads at least the sleep; a timer that also counts
the counted run, warm-ups, model loading or image reading reads far more. The bitstream is the picture
size only; decode returns mid-grey.
"""

from __future__ import annotations

import struct
import time

import torch
from torch import nn

ENCODE_SLEEP_S = 0.05
DECODE_SLEEP_S = 0.20


class SleepyCodec:
    def __init__(self, device):
        self.encoder = nn.Identity()
        self.decoder = nn.Identity()
        self.device = device
        self.weights_source = "no weights"

    def encode(self, image):
        time.sleep(ENCODE_SLEEP_S)
        h, w = image.shape[-2:]
        return struct.pack(">HH", h, w)

    def decode(self, bits):
        time.sleep(DECODE_SLEEP_S)
        h, w = struct.unpack(">HH", bits[:4])
        return torch.full((1, 3, h, w), 0.5, device=self.device)


def build(rate, device):
    return SleepyCodec(device)
