"""Device interoperability: bitstreams encoded on device A, decoded on device A and on device B.

JPEG AI asks that a bitstream encoded on the CPU decodes on a GPU to the same picture (the BD-rate of the
GPU-decoded curve against the CPU-decoded one must stay below 0.5 %). Float arithmetic differs between
devices (summation order, fused kernels); a codec whose entropy decoding depends on float rounding
desynchronises and decodes garbage (Ballé et al., ICLR 2019, "Integer networks for data compression").

Pairs:
- `cpu→cuda` where a CUDA device exists and was requested: the codec is built a second time for CUDA
  and decodes the CPU's bitstreams.
- otherwise a labelled **proxy** on the CPU: device B is the same codec decoding with oneDNN (mkldnn)
  disabled, which really changes float arithmetic (measured: CompressAI decoder outputs move by ~3e-8,
  transposed convolutions by ~2e-7), while 1 vs 2 threads changed nothing. A proxy is weaker evidence
  than a second device: a codec that passes it can still fail on a GPU.

Per image this records the A-decoded and B-decoded quality (PSNR-RGB, PSNR-Y, MS-SSIM), the largest
absolute difference between the two reconstructions (float, [0, 1] scale, and in 8-bit code values), and
any decode failure. The BD-rate over rate points is computed by the compliance rule from these.
"""

from __future__ import annotations

import traceback
import warnings

import torch

from .quality import image_quality, psnr_rgb, to_uint8

PROXY_PAIR = "cpu→cpu (oneDNN off)"
PROXY_NOTE = ("proxy: no CUDA device, device B is the CPU with oneDNN (mkldnn) disabled, which changes "
              "float arithmetic; a real cpu→cuda pair is stronger evidence")


def _decode_b_proxy(codec, bits: bytes) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # oneDNN's note about TF32 on Intel GPUs
        with torch.backends.mkldnn.flags(enabled=False):
            return codec.decode(bits)


def choose_pair(devices: list[str]) -> tuple[str, bool]:
    """(pair label, is_proxy) for the devices requested on this machine."""
    if "cuda" in devices and torch.cuda.is_available():
        return "cpu→cuda", False
    return PROXY_PAIR, True


def _quality(x: torch.Tensor, y: torch.Tensor) -> dict:
    return {"psnr_rgb": psnr_rgb(x, y), **image_quality(x, y)}


def measure_interop(codec, build, rate, images, cond, devices, result) -> None:
    """Fill `result.interop` for this rate point (or say in `result.not_measured` why not)."""
    pair, proxy = choose_pair(list(devices))
    codec_b = None
    out: dict = {"pair": pair, "proxy": proxy, "note": PROXY_NOTE if proxy else "", "images": []}
    if not proxy:
        try:
            codec_b = build(rate, torch.device("cuda"))
        except Exception as exc:
            out["build_error"] = f"{type(exc).__name__}: {exc}"
    with torch.no_grad():
        for img in images:
            x = img.tensor("cpu")
            entry: dict = {"name": img.name, "width": img.width, "height": img.height}
            try:
                bits = codec.encode(x)
                bits = bytes(bits)
                x_a = codec.decode(bits).detach().float().cpu()
            except Exception as exc:
                # The profile itself already records encode/decode failures on device A.
                entry["error_a"] = f"{type(exc).__name__}: {exc}"
                out["images"].append(entry)
                continue
            entry["bytes"] = len(bits)
            entry["bpp"] = 8.0 * len(bits) / (img.width * img.height)
            entry["a"] = _quality(x, x_a)
            try:
                if proxy:
                    x_b = _decode_b_proxy(codec, bits)
                elif codec_b is None:
                    raise RuntimeError(f"build() for cuda failed: {out.get('build_error')}")
                else:
                    x_b = codec_b.decode(bits)
                    torch.cuda.synchronize()
                x_b = x_b.detach().float().cpu()
                if tuple(x_b.shape) != tuple(x_a.shape):
                    raise RuntimeError(f"decoded shape {tuple(x_b.shape)} differs from {tuple(x_a.shape)}")
            except Exception as exc:
                entry["decode_error_b"] = f"{type(exc).__name__}: {exc}"
                entry["traceback_b"] = traceback.format_exc(limit=5)
                out["images"].append(entry)
                continue
            entry["b"] = _quality(x, x_b)
            entry["max_abs_diff"] = float((x_a - x_b).abs().max().item()) if x_a.numel() else 0.0
            entry["max_abs_diff_8bit"] = int((to_uint8(x_a).int() - to_uint8(x_b).int()).abs().max().item())
            entry["psnr_drop_db"] = _drop(entry["a"]["psnr_rgb"], entry["b"]["psnr_rgb"])
            out["images"].append(entry)
    result.interop = out


def _drop(a: float, b: float) -> float:
    """PSNR lost by decoding on B (inf − inf = 0: both lossless)."""
    if a == b:
        return 0.0
    return a - b
