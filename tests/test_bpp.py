"""bpp = 8 × bytes / (W × H), from a bitstream whose length is known."""

import hashlib

import torch

from profiler.conditions import TestConditions
from profiler.images import TestImage
from profiler.worker import _measure_image

import numpy as np


class FixedLengthCodec:
    """Writes exactly 1234 bytes whatever the image; decodes to grey."""

    def __init__(self):
        self.encoder = torch.nn.Identity()
        self.decoder = torch.nn.Identity()

    def encode(self, image):
        self.shape = image.shape
        return bytes(1234)

    def decode(self, bits):
        return torch.full(self.shape, 0.5)


def test_bpp_from_known_length():
    img = TestImage("grey", np.full((101, 203, 3), 128, np.uint8))
    cond = TestConditions()
    res, interop_entry, _ = _measure_image(FixedLengthCodec(), img, cond)
    assert interop_entry is None
    assert res["bytes"] == 1234
    assert res["bpp"] == 8 * 1234 / (101 * 203)
    assert abs(res["bpp"] - 0.481491) < 1e-6
    # 128/255 vs 0.5 quantise to the same 8-bit value: the reconstruction is exact.
    assert res["psnr_rgb"] == float("inf")
    # The report ties the figures to the bytes: the bitstream's and the 8-bit picture's sha256
    # (0.5 × 255 = 127.5 rounds to 128; the picture is 1×3×101×203 bytes of 128, planar).
    assert res["bitstream_sha256"] == hashlib.sha256(bytes(1234)).hexdigest()
    assert res["decoded_sha256"] == hashlib.sha256(bytes([128]) * (3 * 101 * 203)).hexdigest()
