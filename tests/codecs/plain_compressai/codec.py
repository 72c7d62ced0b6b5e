"""A CompressAI model written as most proponents write a codec: a plain `build()` returning an object
with `encoder`, `decoder`, `encode()` and `decode()` — no `encode_networks`/`decode_networks`, so the
suite cannot run its networks on the meta device (profiler/codec.py CountableNetworks).

Rate options: `arch` (a CompressAI zoo name: "mbt2018-mean", "cheng2020-anchor", "mbt2018", …) and
`quality`. Random initialisation (seed 0), entropy models updated: counts and times are real, rates
and quality are not meaningful. Used by benchmarks/profile_cost.py and tests/test_cost.py.
"""

from __future__ import annotations

import struct

import torch
import torch.nn.functional as F
from compressai.zoo import image_models
from torch import nn

_HEADER = struct.Struct(">HHHH")


class PlainCompressAI:
    def __init__(self, arch: str, quality: int, device):
        torch.manual_seed(0)
        model = image_models[arch](quality=quality, pretrained=False).to(device).eval()
        model.update(force=True)
        self.model = model
        self.multiple = 64
        children = dict(model.named_children())
        self.encoder = nn.ModuleDict({k: v for k, v in children.items() if k != "g_s"})
        self.decoder = nn.ModuleDict({k: v for k, v in children.items() if k not in ("g_a", "h_a")})
        self.weights_source = f"random initialisation (seed 0) of compressai {arch} quality {quality}"

    @torch.no_grad()
    def encode(self, image):
        h, w = image.shape[-2:]
        m = self.multiple
        x = F.pad(image, (0, (m - w % m) % m, 0, (m - h % m) % m), mode="replicate")
        out = self.model.compress(x)
        y_strings, z_strings = out["strings"]
        zh, zw = out["shape"]
        parts = [_HEADER.pack(h, w, zh, zw), struct.pack(">I", len(y_strings[0])), y_strings[0], z_strings[0]]
        return b"".join(parts)

    @torch.no_grad()
    def decode(self, bits):
        h, w, zh, zw = _HEADER.unpack(bits[:_HEADER.size])
        pos = _HEADER.size
        (ny,) = struct.unpack(">I", bits[pos:pos + 4])
        pos += 4
        y, z = bits[pos:pos + ny], bits[pos + ny:]
        x = self.model.decompress([[y], [z]], (zh, zw))["x_hat"]
        return x[..., :h, :w].clamp(0, 1)


def build(rate, device):
    return PlainCompressAI(rate.options.get("arch", "mbt2018-mean"), int(rate.options.get("quality", 1)), device)
