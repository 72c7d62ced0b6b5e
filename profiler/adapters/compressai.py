"""CompressAI image models as Codecs: `entry = "profiler.adapters.compressai:build"`.

Rate options: `arch` (a name in `ARCHITECTURES`: CompressAI's zoo, `compressai.zoo.image_models`, plus
"cheng2020-anchor-checkerboard", which CompressAI 1.2.8 ships as a model class but not in its zoo),
`quality` (the zoo's quality level, which fixes the channel counts), optionally `metric` ("mse" or
"ms-ssim": the zoo's name for which trained weights a quality refers to; it does not change the
networks). Weights, when the manifest names a file, are the model's state dict (loaded by the suite,
CompressAI's key layout, old key names converted by `compressai.zoo.load_state_dict`); without one the
model is randomly initialised with a seed fixed by (arch, quality), and the report says so.

- `encoder`: every network `compress()` runs — everything but the synthesis transform `g_s`;
- `decoder`: every network `decompress()` runs — everything but the analysis transforms `g_a` and `h_a`
  (the hyper decoder `h_s`, the entropy models and any context model belong to both). The split is by
  module name at any depth, so it also holds for models whose `h_a` sits inside a latent codec;
- `encode`: pads to the model's multiple (replicate), runs `compress()` with CompressAI's real rANS
  coder and serialises the strings with a small header (original H, W and the hyper-latent's h, w);
- `decode`: parses the bytes, runs `decompress()`, crops back to H×W.
- `encode_networks` / `decode_networks`: the same networks without entropy coding (rounding in place of
  the quantiser, dense context model in place of the serial loop — the same MACs), so the suite can count
  them on the meta device at any resolution (profiler/codec.py, `CountableNetworks`).

Decoder structure matters for complexity: `mbt2018` decodes its latent one position at a time (a python
loop over H/16 × W/16 positions, each running the 5×5 context convolution and the entropy-parameter
network on one position) — the serial worst case; `cheng2020-anchor-checkerboard` decodes in two
passes over the whole latent (anchors without context, then non-anchors with a masked convolution over
the anchors) — a parallel decoder.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..codec import crop, pack_strings, pad_to_multiple, unpack_strings
from ..errors import InputError

_HEADER = struct.Struct(">HHHH")   # original H, W; hyper-latent shape h, w

# JPEG AI target rates (bpp) → CompressAI quality level, per architecture: one rate point per target
# rate. Chosen from CompressAI's published Kodak results for its trained weights (the highest quality
# whose rate stays near or below the target; the lowest quality for targets below the lowest rate a
# fixed-quality model reaches). With random initialisation the rates are not meaningful; the mapping
# fixes which networks (channel counts) each rate point profiles. The bundled manifests follow it
# (tests/test_zoo.py checks they agree).
_GOOGLE_QUALITIES = {0.03: 1, 0.06: 1, 0.12: 1, 0.25: 2, 0.50: 4, 0.75: 5, 1.00: 6, 1.50: 7, 2.00: 8}
_CHENG_QUALITIES = {0.03: 1, 0.06: 1, 0.12: 1, 0.25: 2, 0.50: 4, 0.75: 5, 1.00: 6, 1.50: 6, 2.00: 6}


@dataclass(frozen=True)
class Architecture:
    """How to build one CompressAI architecture and drive its compress/decompress."""

    name: str
    title: str                              # paper, for READMEs and messages
    multiple: int                           # total downsampling of g_a + h_a: inputs are padded to it
    qualities: tuple[int, ...]              # valid quality levels
    quality_for_target: dict                # JPEG AI target bpp → quality
    make: Callable[[int, str], nn.Module]   # (quality, metric) → randomly initialised model
    # (model, hyper-latent h, w) → the `shape` argument of model.decompress
    decompress_shape: Callable[[nn.Module, int, int], object] = lambda model, h, w: (h, w)
    decoder: str = "parallel"               # "serial" (per-position loop) or "parallel"


def _zoo(name: str) -> Callable[[int, str], nn.Module]:
    def make(quality: int, metric: str) -> nn.Module:
        from compressai.zoo import image_models

        return image_models[name](quality=quality, metric=metric, pretrained=False)
    return make


def _checkerboard(quality: int, metric: str) -> nn.Module:
    # Same channel counts per quality as CompressAI's cheng2020-anchor zoo entry (N=128 for 1–3,
    # N=192 for 4–6): the transforms are identical, only the context model differs.
    from compressai.models.sensetime import Cheng2020AnchorCheckerboard
    from compressai.zoo.image import cfgs

    (n,) = cfgs["cheng2020-anchor"][quality]
    return Cheng2020AnchorCheckerboard(N=n)


def _checkerboard_shape(model: nn.Module, h: int, w: int) -> dict:
    # The latent y is 4× the hyper-latent in each direction and has N channels (the context
    # convolution's input channels).
    n = model.latent_codec["y"].context_prediction.in_channels
    return {"y": (n, 4 * h, 4 * w), "hyper": (h, w)}


ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in [
    Architecture("bmshj2018-hyperprior", "Ballé et al. 2018, scale hyperprior (ICLR 2018)", 64,
                 tuple(range(1, 9)), _GOOGLE_QUALITIES, _zoo("bmshj2018-hyperprior")),
    Architecture("mbt2018-mean", "Minnen et al. 2018, mean-scale hyperprior (NeurIPS 2018)", 64,
                 tuple(range(1, 9)), _GOOGLE_QUALITIES, _zoo("mbt2018-mean")),
    Architecture("mbt2018", "Minnen et al. 2018, joint autoregressive and hierarchical priors (NeurIPS 2018)",
                 64, tuple(range(1, 9)), _GOOGLE_QUALITIES, _zoo("mbt2018"), decoder="serial"),
    Architecture("cheng2020-anchor", "Cheng et al. 2020, anchor with serial autoregressive context (CVPR 2020)",
                 64, tuple(range(1, 7)), _CHENG_QUALITIES, _zoo("cheng2020-anchor"), decoder="serial"),
    Architecture("cheng2020-attn", "Cheng et al. 2020, with attention modules (CVPR 2020)",
                 64, tuple(range(1, 7)), _CHENG_QUALITIES, _zoo("cheng2020-attn"), decoder="serial"),
    Architecture("cheng2020-anchor-checkerboard",
                 "Cheng et al. 2020 transforms with the checkerboard context of He et al. 2021 (CVPR 2021)",
                 64, tuple(range(1, 7)), _CHENG_QUALITIES, _checkerboard, _checkerboard_shape),
]}


SEP = "__"


def _part(model: nn.Module, exclude: set[str]) -> nn.Module:
    """A module holding every submodule of `model` except those named in `exclude` (at any depth).

    A child that contains an excluded module is split into its own children; the others are taken
    whole. Nested names are joined with `SEP` ('__'): module names may not contain '.', and '/' would
    break fvcore, whose jit scope names are '/'-separated (the cross-check).
    """
    part = nn.Module()

    def visit(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            if name in exclude:
                continue
            full = f"{prefix}{SEP}{name}" if prefix else name
            if any(n.rsplit(".", 1)[-1] in exclude for n, _ in child.named_modules() if n):
                visit(child, full)
            else:
                part.add_module(full, child)
        # Parameters held directly by a split module (none in CompressAI's models, but not lost if so).
        for pname, p in module.named_parameters(recurse=False):
            part.register_parameter(f"{prefix}{SEP}{pname}".removeprefix(SEP).replace(".", SEP), p)

    visit(model, "")
    return part


@dataclass(frozen=True)
class _Networks:
    """The entropy-model networks of a CompressAI model, wherever the model keeps them."""

    h_a: nn.Module
    h_s: nn.Module
    context_prediction: nn.Module | None
    entropy_parameters: nn.Module | None
    checkerboard: nn.Module | None = None   # the two-pass latent codec, where the model has one


def _networks(m: nn.Module) -> _Networks:
    if hasattr(m, "latent_codec"):
        # CompressAI's latent-codec models (Cheng2020AnchorCheckerboard): HyperpriorLatentCodec holding
        # a HyperLatentCodec ("hyper": h_a, h_s) and a CheckerboardLatentCodec ("y"), whose two passes
        # each run the context convolution over the whole latent and the 1×1 entropy parameters over
        # one half of it (compressai/latent_codecs/checkerboard.py; _checkerboard_parameters).
        hyper, ycodec = m.latent_codec["hyper"], m.latent_codec["y"]
        return _Networks(hyper.h_a, hyper.h_s, getattr(ycodec, "context_prediction", None),
                         getattr(ycodec, "entropy_parameters", None), ycodec)
    return _Networks(m.h_a, m.h_s, getattr(m, "context_prediction", None), getattr(m, "entropy_parameters", None))


def _entropy_parameters(nets: _Networks, latents: dict) -> torch.Tensor:
    params = nets.h_s(latents["z_hat"])
    if nets.context_prediction is None or nets.entropy_parameters is None:
        return params
    if nets.checkerboard is not None:
        return _checkerboard_parameters(nets.checkerboard, latents["y_hat"], params)
    ctx = nets.context_prediction(latents["y_hat"])
    return nets.entropy_parameters(torch.cat((params, ctx), dim=1))


def _checkerboard_parameters(ycodec: nn.Module, y_hat: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
    """CheckerboardLatentCodec.decompress without the entropy decoder: pass 0 (anchors) runs the context
    convolution on the not yet decoded latent and masks it out, pass 1 (the rest) on the anchors; each
    pass runs the entropy parameters on its half of the positions."""
    side_ = ycodec.unembed(side)
    y_ = ycodec.unembed(y_hat)
    halves = []
    for i in range(2):
        y_known = y_ * 0 if i == 0 else y_               # nothing decoded before the anchors
        ctx_i = ycodec.unembed(ycodec.context_prediction(ycodec.embed(y_known)))[i]
        if i == 0:
            ctx_i = ycodec._mask_all(ctx_i)
        halves.append(ycodec.entropy_parameters(ycodec.merge(ctx_i, side_[i])))
    return ycodec.embed(torch.stack(halves))


class CompressAICodec:
    def __init__(self, model: nn.Module, arch: Architecture, device: torch.device, weights_source: str):
        self.model = model.to(device).eval()
        self.arch = arch
        self.device = device
        self.multiple = arch.multiple
        self.encoder = _part(self.model, {"g_s"})
        self.decoder = _part(self.model, {"g_a", "h_a"})
        self.weights_source = weights_source

    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> bytes:
        x, (h, w) = pad_to_multiple(image.to(self.device), self.multiple)
        out = self.model.compress(x)
        zh, zw = (x.shape[-2] // self.multiple, x.shape[-1] // self.multiple)
        strings = [s[0] for s in out["strings"]]   # batch of one
        return pack_strings(_HEADER.pack(h, w, zh, zw), strings)

    @torch.no_grad()
    def encode_networks(self, image: torch.Tensor) -> dict:
        """Every network `compress()` runs, on any device (meta included): g_a, h_a, h_s, and the
        context model and entropy parameters of context models (dense, which is what the serial
        per-position loop adds up to; the checkerboard's two passes as they run)."""
        from compressai.models import MeanScaleHyperprior, ScaleHyperprior

        m = self.model
        nets = _networks(m)
        x, _ = pad_to_multiple(image, self.multiple)
        y = m.g_a(x)
        # Ballé 2018 feeds |y| to the hyper-analysis; the mean-scale models feed y.
        plain_scale = isinstance(m, ScaleHyperprior) and not isinstance(m, MeanScaleHyperprior)
        z = nets.h_a(torch.abs(y) if plain_scale else y)
        latents = {"y_hat": torch.round(y), "z_hat": torch.round(z)}
        # returned so that a tracing counter (fvcore) does not drop h_s as dead code
        return {**latents, "entropy_parameters": _entropy_parameters(nets, latents)}

    @torch.no_grad()
    def decode_networks(self, latents: dict) -> dict:
        """Every network `decompress()` runs: h_s (and the context model), then g_s."""
        params = _entropy_parameters(_networks(self.model), latents)
        return {"x_hat": self.model.g_s(latents["y_hat"]), "entropy_parameters": params}

    @torch.no_grad()
    def decode(self, bitstream: bytes) -> torch.Tensor:
        header, strings = unpack_strings(bitstream, _HEADER.size)
        h, w, zh, zw = _HEADER.unpack(header)
        out = self.model.decompress([[s] for s in strings], self.arch.decompress_shape(self.model, zh, zw))
        return crop(out["x_hat"].clamp_(0, 1), (h, w))


def build_model(arch_name: str, quality: int, metric: str = "mse", state_dict: dict | None = None,
                where: str = "options") -> nn.Module:
    """The CompressAI model, randomly initialised (seeded by arch and quality) or from `state_dict`."""
    if arch_name not in ARCHITECTURES:
        raise InputError(None, f"{where}.arch",
                         f"unknown CompressAI architecture {arch_name!r} (known: {', '.join(ARCHITECTURES)})")
    arch = ARCHITECTURES[arch_name]
    if quality not in arch.qualities:
        raise InputError(None, f"{where}.quality",
                         f"{arch_name} has qualities {arch.qualities[0]}–{arch.qualities[-1]}, got {quality!r}")
    if metric not in ("mse", "ms-ssim"):
        raise InputError(None, f"{where}.metric", f"expected 'mse' or 'ms-ssim', got {metric!r}")
    # A fixed seed per (arch, quality): rate points mapped to the same quality get identical weights.
    torch.manual_seed(zlib.crc32(f"{arch_name}:{quality}".encode()))
    model = arch.make(quality, metric)
    if state_dict is not None:
        from compressai.zoo import load_state_dict

        model.load_state_dict(load_state_dict(dict(state_dict)))
    model.update(force=True)
    return model


def build(rate, device: torch.device | str = "cpu") -> CompressAICodec:
    opts = dict(rate.options)
    where = f"rates[{rate.index}].options"
    arch_name = opts.get("arch", "bmshj2018-hyperprior")
    quality = opts.get("quality", 1)
    if not isinstance(quality, int) or isinstance(quality, bool):
        raise InputError(None, f"{where}.quality", f"expected an integer, got {quality!r}")
    model = build_model(arch_name, quality, opts.get("metric", "mse"), rate.state_dict, where)
    if rate.state_dict is not None:
        source = f"trained weights from {rate.weights.name if rate.weights else 'the manifest'}"
    else:
        source = "random initialisation (no trained weights on this machine)"
    return CompressAICodec(model, ARCHITECTURES[arch_name], torch.device(device), source)
