"""RefNet: jpegai-profile's own trained reference codec — a mean-scale hyperprior with per-image rate
control and an integer hyper decoder.

Networks (CompressAI layers, 64/128 channels):
- `g_a`  analysis: 4 × (conv 5×5 stride 2), GDN between them → y, 128 channels at 1/16 resolution;
- `h_a`  hyper analysis: conv 3×3, 2 × conv 5×5 stride 2, ReLU → z, 64 channels at 1/64;
- `h_s`  hyper synthesis → means and scales of y. After training it is **integerised**
  (`IntegerHyperSynthesis`): int8 weights, integer biases, 16-bit unsigned activations, exact integer
  accumulation. The entropy decoder needs bit-identical scales and means on the encoding and the
  decoding device; a float hyper decoder gives that only by luck (Ballé, Johnston, Minnen, ICLR 2019);
  the JPEG AI reference software integerises this network for the same reason;
- `g_s`  synthesis: 4 × (transposed conv 5×5 stride 2), inverse GDN between them.

Variable rate from one model: y is quantised with a step `q` (symbols = round((y − μ)/q)) and coded
with the Gaussian of scale σ/q; the model was trained over a range of steps (train.py). Per-image rate
control: `encode()` picks, from a ladder of steps q = 2^(k/8), the finest whose complete bitstream fits
target_bpp × W × H / 8 bytes (bisection on k, each try a real rANS encode; the networks run once). If
even the coarsest step does not fit (tiny images at 0.03 bpp), the hyper-latent is dropped (flag in
the header) and y is coded with the hyper decoder's output for z = 0.

Bitstream: header (H, W, flags, step q as float32) then the z and y rANS strings, each with a varint
length (profiler.codec.pack_strings). Everything the decoder needs is in the bytes.
"""

from __future__ import annotations

import math
import struct

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from compressai.models import CompressionModel
from compressai.models.utils import conv, deconv
from torch import nn

from profiler.codec import crop, pack_strings, pad_to_multiple, unpack_strings

N, M = 64, 128
MULTIPLE = 64                       # g_a and h_a downsample by 64 in all
LADDER = range(-40, 73)             # step q = 2^(k/8): 1/32 … 512
_HEADER = struct.Struct(">HHBf")    # H, W, flags, q
_NO_HYPER = 1                       # flag: z not sent, y coded with h_s(0)

ACT_BITS = 16                       # unsigned activations of the integer hyper decoder
WEIGHT_BITS = 8                     # signed weights of the integer hyper decoder


def step(k: int) -> float:
    """The quantiser step of ladder position k, as the float32 value written to the header."""
    return struct.unpack(">f", struct.pack(">f", 2.0 ** (k / 8)))[0]


class HyperSynthesis(nn.Sequential):
    """h_s as trained (float): z → (means, scales) of y."""

    def __init__(self):
        super().__init__(deconv(N, N), nn.ReLU(inplace=True), deconv(N, N * 3 // 2), nn.ReLU(inplace=True),
                         conv(N * 3 // 2, 2 * M, stride=1, kernel_size=3))


class IntegerHyperSynthesis(nn.Module):
    """h_s as an integer network: the same three layers with int8 weights (held in float32 parameters)
    and integer biases; activations are unsigned 16-bit integers with a power-of-two scale per layer.

    Every accumulation is a sum of products of integers far below 2^53, computed in float64: exact, so
    the result does not depend on the order of summation, the kernel or the device. Rescaling between
    layers is a floor division by a power of two (exact). The output is integer × 2^-f, exact in float64
    and rounded once to float32 — the same value everywhere.
    """

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([deconv(N, N), deconv(N, N * 3 // 2), conv(N * 3 // 2, 2 * M, stride=1,
                                                                                  kernel_size=3)])
        # fractional bits: of the input z, of each layer's weights, of each layer's output activations
        self.register_buffer("input_bits", torch.zeros((), dtype=torch.int32))
        self.register_buffer("weight_bits", torch.zeros(3, dtype=torch.int32))
        self.register_buffer("act_bits", torch.zeros(2, dtype=torch.int32))

    def freeze(self) -> None:
        """Read the scales once into plain ints, so the forward also runs on the meta device."""
        self._bits = (int(self.input_bits), [int(b) for b in self.weight_bits], [int(b) for b in self.act_bits])

    def forward(self, z_hat: torch.Tensor) -> torch.Tensor:
        # cuDNN may pick FFT or Winograd algorithms, which round even integer inputs; with it off, CUDA
        # (like the CPU) computes these convolutions as im2col + GEMM, exact for integers below 2^53.
        with torch.backends.cudnn.flags(enabled=False):
            return self._integer_forward(z_hat)

    def _integer_forward(self, z_hat: torch.Tensor) -> torch.Tensor:
        fin, weight_bits, act_bits = self._bits
        x = torch.round(z_hat.double() * 2.0 ** fin)
        top = 2.0 ** ACT_BITS - 1
        for i, layer in enumerate(self.layers):
            w = layer.weight.double()
            b = layer.bias.double()
            if isinstance(layer, nn.ConvTranspose2d):
                acc = F.conv_transpose2d(x, w, b, stride=layer.stride, padding=layer.padding,
                                         output_padding=layer.output_padding)
            else:
                acc = F.conv2d(x, w, b, stride=layer.stride, padding=layer.padding)
            frac = fin + weight_bits[i]          # fractional bits of the accumulator
            if i == len(self.layers) - 1:
                return (acc * 2.0 ** -frac).float()
            fout = act_bits[i]
            x = torch.clamp(torch.floor(torch.relu(acc) * 2.0 ** (fout - frac)), 0, top)
            fin = fout
        raise AssertionError("unreachable")

    @torch.no_grad()
    def load_from(self, float_hs: HyperSynthesis, calibration: torch.Tensor) -> None:
        """Integerise `float_hs`: weight scales from each layer's largest weight, activation scales from
        the largest activation seen on `calibration` (z values of training crops)."""
        floats = [m for m in float_hs if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        wmax = 2 ** (WEIGHT_BITS - 1) - 1
        self.input_bits.fill_(_fraction_bits(calibration.abs().max().item(), 2 ** 15 - 1))
        x = calibration
        for i, (src, dst) in enumerate(zip(floats, self.layers)):
            wb = _fraction_bits(src.weight.abs().max().item(), wmax)
            self.weight_bits[i] = wb
            dst.weight.copy_(torch.clamp(torch.round(src.weight * 2.0 ** wb), -wmax - 1, wmax))
            fin = int(self.input_bits) if i == 0 else int(self.act_bits[i - 1])
            dst.bias.copy_(torch.round(src.bias * 2.0 ** (wb + fin)))
            assert dst.bias.abs().max() < 2 ** 24, "integer bias not exact in float32"
            x = src(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
                self.act_bits[i] = _fraction_bits(x.max().item() * 1.25, 2 ** ACT_BITS - 1)
        self.freeze()


def _fraction_bits(largest: float, limit: int) -> int:
    """Most fractional bits f with largest × 2^f ≤ limit."""
    return int(math.floor(math.log2(limit / max(largest, 1e-8))))


class RefNet(CompressionModel):
    """The networks and entropy models. `integer_hyper` chooses the hyper decoder used for coding."""

    def __init__(self):
        super().__init__()
        self.g_a = nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))
        self.h_a = nn.Sequential(conv(M, N, stride=1, kernel_size=3), nn.ReLU(inplace=True), conv(N, N),
                                 nn.ReLU(inplace=True), conv(N, N))
        self.h_s = HyperSynthesis()
        self.h_s_int = IntegerHyperSynthesis()
        self.g_s = nn.Sequential(deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
                                 deconv(N, N), GDN(N, inverse=True), deconv(N, 3))
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)

    # ---- training (train.py) -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, q: torch.Tensor) -> dict:
        """Training pass with additive uniform noise at step `q` ([B] tensor, one step per sample)."""
        qv = q.view(-1, 1, 1, 1)
        y = self.g_a(x)
        z = self.h_a(y)
        z_tilde, z_likelihoods = self.entropy_bottleneck(z)
        means, scales = self.h_s(z_tilde).chunk(2, 1)
        y_n, y_likelihoods = self.gaussian_conditional(y / qv, scales / qv, means=means / qv)
        x_hat = self.g_s(y_n * qv)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}


class Part(nn.Module):
    """The modules one side of the codec runs (the model's own modules, shared, not copied)."""

    def __init__(self, **modules: nn.Module):
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, module)


class RefNetCodec:
    def __init__(self, model: RefNet, target_bpp: float, device: torch.device, source: str):
        self.model = model.to(device).eval()
        self.target_bpp = target_bpp
        self.device = device
        self.weights_source = source
        m = self.model
        # The hyper decoder and both entropy models run on both sides.
        self.encoder = Part(g_a=m.g_a, h_a=m.h_a, h_s=m.h_s_int, entropy_bottleneck=m.entropy_bottleneck,
                            gaussian_conditional=m.gaussian_conditional)
        self.decoder = Part(h_s=m.h_s_int, entropy_bottleneck=m.entropy_bottleneck,
                            gaussian_conditional=m.gaussian_conditional, g_s=m.g_s)

    # ---- the codec ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> bytes:
        m = self.model
        h, w = image.shape[-2:]
        x, _ = pad_to_multiple(image, MULTIPLE)
        y = m.g_a(x)
        z = m.h_a(y)
        budget = int(self.target_bpp * w * h / 8)        # bytes

        z_strings = m.entropy_bottleneck.compress(z)
        z_hat = m.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        params = m.h_s_int(z_hat)
        tries: dict[tuple[int, int], bytes] = {}

        def attempt(k: int, flags: int, params: torch.Tensor, z_string: bytes) -> bytes:
            if (k, flags) not in tries:
                tries[(k, flags)] = self._pack(y, params, k, flags, z_string, (h, w))
            return tries[(k, flags)]

        def finest_fitting(flags: int, params: torch.Tensor, z_string: bytes) -> bytes | None:
            lo, hi = LADDER[0], LADDER[-1]
            if len(attempt(hi, flags, params, z_string)) > budget:
                return None
            if len(attempt(lo, flags, params, z_string)) <= budget:
                return attempt(lo, flags, params, z_string)
            while hi - lo > 1:                           # invariant: lo does not fit, hi fits
                mid = (lo + hi) // 2
                if len(attempt(mid, flags, params, z_string)) <= budget:
                    hi = mid
                else:
                    lo = mid
            return attempt(hi, flags, params, z_string)

        best = finest_fitting(0, params, z_strings[0])
        if best is None:                                 # the hyper-latent alone is over the budget
            params0 = m.h_s_int(torch.zeros_like(z_hat))
            best = finest_fitting(_NO_HYPER, params0, b"")
        if best is None:                                 # nothing fits: the smallest bitstream we have
            best = min(tries.values(), key=len)
        return best

    def _pack(self, y: torch.Tensor, params: torch.Tensor, k: int, flags: int, z_string: bytes,
              size: tuple[int, int]) -> bytes:
        gc = self.model.gaussian_conditional
        q = step(k)
        inv = torch.tensor(1.0 / q, dtype=torch.float32, device=y.device)
        means, scales = params.chunk(2, 1)
        indexes = gc.build_indexes(scales * inv)
        y_string = gc.compress(y * inv, indexes, means=means * inv)[0]
        return pack_strings(_HEADER.pack(size[0], size[1], flags, q), [z_string, y_string])

    @torch.no_grad()
    def decode(self, bitstream: bytes) -> torch.Tensor:
        h, w = _HEADER.unpack(bitstream[:_HEADER.size])[:2] if len(bitstream) >= _HEADER.size else (0, 0)
        y_hat = self.decode_latents(bitstream)
        x_hat = self.model.g_s(y_hat)
        return crop(x_hat, (h, w)).clamp(0, 1)

    # ---- compressed-domain tasks (profiler/codec.py LatentDecoder; tasks.py beside this file) -----------
    @property
    def synthesis(self) -> nn.Module:
        return self.model.g_s

    @torch.no_grad()
    def decode_latents(self, bitstream: bytes) -> torch.Tensor:
        """The dequantised latent ŷ (128 channels at 1/16 of the padded picture): entropy decoding and
        the hyper decoder, without g_s. What `decode()` feeds to g_s, bit for bit."""
        m = self.model
        header, (z_string, y_string) = unpack_strings(bitstream, _HEADER.size)
        h, w, flags, q = _HEADER.unpack(header)
        hp, wp = -(-h // MULTIPLE) * MULTIPLE, -(-w // MULTIPLE) * MULTIPLE
        zshape = (hp // MULTIPLE, wp // MULTIPLE)
        if flags & _NO_HYPER:
            z_hat = torch.zeros(1, N, *zshape, device=self.device)
        else:
            z_hat = m.entropy_bottleneck.decompress([z_string], zshape)
        means, scales = m.h_s_int(z_hat).chunk(2, 1)
        inv = torch.tensor(1.0 / q, dtype=torch.float32, device=self.device)
        indexes = m.gaussian_conditional.build_indexes(scales * inv)
        y_n = m.gaussian_conditional.decompress([y_string], indexes, means=means * inv)
        return y_n * q

    # ---- for counting at any resolution (profiler/codec.py CountableNetworks) ---------------------------
    @torch.no_grad()
    def encode_networks(self, image: torch.Tensor) -> dict:
        m = self.model
        x, _ = pad_to_multiple(image, MULTIPLE)
        y = m.g_a(x)
        z_hat = torch.round(m.h_a(y))
        return {"y_hat": torch.round(y), "z_hat": z_hat, "params": m.h_s_int(z_hat)}

    @torch.no_grad()
    def decode_networks(self, latents: dict) -> dict:
        m = self.model
        return {"x_hat": m.g_s(latents["y_hat"]), "params": m.h_s_int(latents["z_hat"])}


def build(rate, device: torch.device | str = "cpu") -> RefNetCodec:
    model = RefNet()
    if rate.state_dict is None:
        raise ValueError("RefNet needs its trained weights: set `weights` in submission.toml")
    # Only what coding needs is shipped: the float h_s is replaced by its integer version.
    state = {k: v for k, v in rate.state_dict.items() if not k.startswith("h_s.")}
    model.load_state_dict(state, strict=False)
    missing = [k for k in model.state_dict() if k not in state and not k.startswith("h_s.")]
    if missing:
        raise ValueError(f"weights file lacks {missing[:3]}")
    # The CDF tables come from the weights file (computed once after training), never recomputed here,
    # so every device codes with the same tables.
    del model.h_s
    model.h_s_int.freeze()
    source = f"trained: {rate.weights.name} (train.py; see README)"
    return RefNetCodec(model, rate.target_bpp, torch.device(device), source)
