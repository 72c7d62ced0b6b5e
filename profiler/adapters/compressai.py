"""CompressAI image models as Codecs: `entry = "profiler.adapters.compressai:build"`.

Rate options: `arch` (a name in `compressai.zoo.image_models`, e.g. "bmshj2018-hyperprior"), `quality`
(the zoo's quality level), optionally `metric` ("mse" or "ms-ssim"). Weights, when the manifest names a
file, are the model's state dict (loaded by the suite; CompressAI's key layout); without one the model
is randomly initialised with a seed fixed by (arch, quality), and the report says so.

- `encoder`: every network `compress()` runs — all children but the synthesis transform `g_s`;
- `decoder`: every network `decompress()` runs — all children but `g_a` and `h_a` (the hyper decoder
  `h_s`, the entropy models and any context model belong to both);
- `encode`: pads to the model's multiple (replicate), runs `compress()` with CompressAI's real rANS
  coder and serialises the strings with a small header (original H, W and the latent shape);
- `decode`: parses the bytes, runs `decompress()`, crops back to H×W.
"""

from __future__ import annotations

import struct
import zlib

import torch
from torch import nn

from ..codec import crop, pack_strings, pad_to_multiple, unpack_strings

_HEADER = struct.Struct(">HHHH")   # original H, W; latent shape h, w (of the hyper-latent)

# Total downsampling of each architecture's analysis + hyper-analysis: inputs are padded to it.
MULTIPLE = {"bmshj2018-factorized": 16, "bmshj2018-factorized-relu": 16, "bmshj2018-hyperprior": 64,
            "mbt2018-mean": 64, "mbt2018": 64, "cheng2020-anchor": 64, "cheng2020-attn": 64}


def _children(model: nn.Module, exclude: set[str]) -> nn.Module:
    part = nn.Module()
    for name, child in model.named_children():
        if name not in exclude:
            part.add_module(name, child)
    return part


class CompressAICodec:
    def __init__(self, model: nn.Module, arch: str, device: torch.device, weights_source: str):
        self.model = model.to(device).eval()
        self.arch = arch
        self.device = device
        self.multiple = MULTIPLE.get(arch, 64)
        self.encoder = _children(self.model, {"g_s"})
        self.decoder = _children(self.model, {"g_a", "h_a"})
        self.weights_source = weights_source

    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> bytes:
        x, (h, w) = pad_to_multiple(image.to(self.device), self.multiple)
        out = self.model.compress(x)
        shape = tuple(out["shape"])
        strings = [s[0] for s in out["strings"]]   # batch of one
        return pack_strings(_HEADER.pack(h, w, *shape), strings)

    @torch.no_grad()
    def decode(self, bitstream: bytes) -> torch.Tensor:
        header, strings = unpack_strings(bitstream, _HEADER.size)
        h, w, sh, sw = _HEADER.unpack(header)
        out = self.model.decompress([[s] for s in strings], (sh, sw))
        return crop(out["x_hat"].clamp_(0, 1), (h, w))


def build(rate, device: torch.device | str = "cpu") -> CompressAICodec:
    from compressai.zoo import image_models, load_state_dict

    opts = dict(rate.options)
    arch = opts.get("arch", "bmshj2018-hyperprior")
    if arch not in image_models:
        raise ValueError(f"options.arch: unknown CompressAI architecture {arch!r} (known: {', '.join(image_models)})")
    quality = int(opts.get("quality", 1))
    metric = opts.get("metric", "mse")
    # A fixed seed per (arch, quality): rate points mapped to the same quality get identical weights.
    torch.manual_seed(zlib.crc32(f"{arch}:{quality}".encode()))
    model = image_models[arch](quality=quality, metric=metric, pretrained=False)
    if rate.state_dict is not None:
        model.load_state_dict(load_state_dict(dict(rate.state_dict)))
        source = f"trained weights from {rate.weights.name if rate.weights else 'the manifest'}"
    else:
        source = "random initialisation (no trained weights on this machine)"
    model.update(force=True)
    return CompressAICodec(model, arch, torch.device(device), source)
