"""Shared by enc.py and dec.py: RefNet (../refnet) built from its trained weights, and PNG I/O."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

REFNET = Path(__file__).resolve().parent.parent / "refnet"
sys.path.insert(0, str(REFNET))

import codec as refnet  # noqa: E402  (submissions/refnet/codec.py)
from safetensors.torch import load_file  # noqa: E402


def build(target_bpp: float):
    weights = REFNET / "weights" / "refnet.safetensors"
    rate = SimpleNamespace(index=0, target_bpp=target_bpp, weights=weights, options={},
                           state_dict=load_file(str(weights)))
    return refnet.build(rate, torch.device("cpu"))


def read_png(path: str) -> torch.Tensor:
    arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0).unsqueeze(0)


def write_png(x: torch.Tensor, path: str) -> None:
    # The delivery's rounding: clamp(0, 1) · 255, rounded half to even (torch.round).
    arr = x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    Image.fromarray(np.ascontiguousarray(arr), "RGB").save(path)
