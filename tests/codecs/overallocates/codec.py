"""Fixture: at 1 bpp, encode asks for 64 GiB (a latent buffer sized from a wrong shape)."""

import torch
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("misbehaving", Path(__file__).resolve().parent.parent / "_misbehaving.py")
misbehaving = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(misbehaving)


def _bad():
    buffer = torch.empty(64 * 1024 ** 3, dtype=torch.uint8)
    buffer.fill_(1)


def build(rate, device):
    return misbehaving.build_misbehaving(rate, device, _bad)
