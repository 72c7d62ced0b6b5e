"""Fixture: broken reconstructions and a message full of markup, one per rate point (issue #18, items 4, 6).

0.5 bpp is the tiny codec. At the others `decode` returns: 1 bpp one NaN pixel value; 2 bpp the picture
as uint8 0–255; 3 bpp a meta-device tensor (shape right, no data); at 4 bpp it raises an exception whose
message holds rich markup and a path in brackets.
"""

import importlib.util
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location("misbehaving", Path(__file__).resolve().parent.parent / "_misbehaving.py")
misbehaving = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(misbehaving)

MARKUP_MESSAGE = "weights [/data/w.pt] not found on [cuda:0] [/red] [bold]"


def _bad(what, x_hat):
    if what == "nan":
        x_hat = x_hat.clone()
        x_hat[0, 1, 2, 3] = float("nan")
        return x_hat
    if what == "uint8":
        return x_hat.mul(255).round().to(torch.uint8)
    if what == "meta":
        return torch.empty(x_hat.shape, device="meta")
    if what == "markup":
        raise RuntimeError(MARKUP_MESSAGE)
    raise AssertionError(what)


def build(rate, device):
    return misbehaving.build_bad_decoder(rate, device, _bad)
