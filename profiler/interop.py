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


def cuda_device_present() -> bool:
    """Whether a CUDA device is there, without creating a CUDA context where torch can avoid it:
    `torch.cuda.device_count()` asks NVML first (no cuInit, so no driver memory in the CPU figures) and
    falls back to the CUDA runtime only where NVML fails. `torch.cuda.is_available()` always runs cuInit."""
    try:
        return torch.cuda.device_count() > 0
    except Exception:
        return False


def choose_pair(devices: list[str], cuda_present: bool | None = None) -> tuple[str, bool]:
    """(pair label, is_proxy) for the devices requested on this machine; `cuda_present` as decided by
    the caller (else `cuda_device_present()`)."""
    if "cuda" in devices and (cuda_device_present() if cuda_present is None else cuda_present):
        return "cpu→cuda", False
    return PROXY_PAIR, True


def _quality(x: torch.Tensor, y: torch.Tensor) -> dict:
    return {"psnr_rgb": psnr_rgb(x, y), **image_quality(x, y)}


def reconstruction_problem(x_hat, shape: tuple, device: torch.device | str | None = None) -> str | None:
    """What is wrong with a decoded picture, as one sentence, or None when it is usable: a floating-point
    tensor of `shape` on `device` (when given), every value finite. Never raises (a meta tensor included)."""
    if not isinstance(x_hat, torch.Tensor):
        return f"decode() must return a tensor of shape {tuple(shape)}, got {type(x_hat).__name__}"
    if x_hat.device.type == "meta":
        return "decode() returned a tensor on the meta device (no data): it must return the decoded picture"
    if not x_hat.is_floating_point():
        return f"decode() must return floats in [0, 1], got {str(x_hat.dtype).removeprefix('torch.')}"
    if tuple(x_hat.shape) != tuple(shape):
        return f"decode() must return a tensor of shape {tuple(shape)}, got {tuple(x_hat.shape)}"
    if device is not None and torch.device(device).type != x_hat.device.type:
        return f"decode() returned a tensor on {x_hat.device}, expected {torch.device(device)}"
    bad = int((~torch.isfinite(x_hat.detach())).sum().item())
    if bad:
        return (f"decode() returned {bad} non-finite value(s) (NaN or inf) among {x_hat.numel()}: "
                f"the reconstruction is broken")
    return None


class BrokenReconstruction(ValueError):
    """A decode() output that `reconstruction_problem` refuses."""


def compare_image(img, x: torch.Tensor, bits: bytes, x_a: torch.Tensor, decode_b, device_b=None,
                  quality_a: dict | None = None) -> dict:
    """One image's entry: `bits` (encoded on A) and `x_a` (their A-decoded picture) against `decode_b(bits)`.

    A B-decoded picture that is not a usable reconstruction (not a float tensor of A's shape on
    `device_b`, or with NaN/inf) is B's decode error, never a comparison (NaN compares as "no difference").
    A broken `x_a` is A's error (`error_a`): the worker refuses it before calling this.
    `quality_a`: A's quality as the caller already measured it (psnr_rgb and `image_quality` of `x_a`),
    not measured twice. A B picture whose 8-bit picture is A's has A's quality (not measured again either).
    """
    entry: dict = {"name": img.name, "width": img.width, "height": img.height, "bytes": len(bits),
                   "bpp": 8.0 * len(bits) / (img.width * img.height)}
    problem = reconstruction_problem(x_a, tuple(x.shape))
    if problem:
        return {"name": img.name, "width": img.width, "height": img.height, "error_a": problem}
    x_a = x_a.detach().float().cpu()
    entry["a"] = dict(quality_a) if quality_a is not None else _quality(x, x_a)
    try:
        x_b = decode_b(bits)
        problem = reconstruction_problem(x_b, tuple(x_a.shape), device_b)
        if problem:
            raise BrokenReconstruction(problem)
        x_b = x_b.detach().float().cpu()
    except Exception as exc:
        entry["decode_error_b"] = f"{type(exc).__name__}: {exc}"
        entry["traceback_b"] = traceback.format_exc(limit=5)
        return entry
    a8, b8 = to_uint8(x_a), to_uint8(x_b)
    # Every metric is computed on the 8-bit pictures (quality.py): where B's rounds to A's 8-bit picture
    # (float differences of ~1e-7 do not move a code value) B's metrics are A's, taken rather than
    # computed again (the whole metric set, the interop step's main cost). max_abs_diff_8bit 0 says so.
    entry["b"] = dict(entry["a"]) if torch.equal(a8, b8) else _quality(x, x_b)
    entry["max_abs_diff"] = float((x_a - x_b).abs().max().item()) if x_a.numel() else 0.0
    entry["max_abs_diff_8bit"] = int((a8.int() - b8.int()).abs().max().item()) if x_a.numel() else 0
    entry["psnr_drop_db"] = _drop(entry["a"]["psnr_rgb"], entry["b"]["psnr_rgb"])
    return entry


def proxy_decoder(codec):
    """Device B of the proxy pair: the same codec decoding with oneDNN off."""
    return lambda bits: _decode_b_proxy(codec, bits)


def measure_interop(codec, build, rate, images, devices, proxy_entries: list | None = None,
                    codec_b=None, cuda_present: bool | None = None) -> dict:
    """This rate point's interoperability entry (`RateResult.interop`, as a dict).

    `proxy_entries`: for the proxy pair, the entries the worker already made from each image's counted
    run (its bitstream and A-decoded picture, `compare_image`), so A is not run again. Otherwise every
    image is encoded and decoded on A here, then decoded on B. `codec_b`: for the cpu→cuda pair, the
    codec already built for CUDA (the worker's, checked and under the GPU settings); else it is built here.
    """
    pair, proxy = choose_pair(list(devices), cuda_present)
    out: dict = {"pair": pair, "proxy": proxy, "note": PROXY_NOTE if proxy else "", "images": []}
    if proxy and proxy_entries is not None:
        return {**out, "images": list(proxy_entries), "a_runs": "the counted encode()/decode() of each image"}
    decode_b = proxy_decoder(codec) if proxy else None
    if not proxy:
        try:
            if codec_b is None:
                codec_b = build(rate, torch.device("cuda"))

            def decode_b(bits: bytes) -> torch.Tensor:
                x_b = codec_b.decode(bits)
                torch.cuda.synchronize()
                return x_b
        except Exception as exc:
            out["build_error"] = f"{type(exc).__name__}: {exc}"

            def decode_b(bits: bytes) -> torch.Tensor:
                raise RuntimeError(f"build() for cuda failed: {out['build_error']}")
    entries = []
    with torch.no_grad():
        for img in images:
            x = img.tensor("cpu")
            try:
                bits = bytes(codec.encode(x))
                x_a = codec.decode(bits)
            except Exception as exc:
                # The profile itself already records encode/decode failures on device A.
                entries.append({"name": img.name, "width": img.width, "height": img.height,
                                "error_a": f"{type(exc).__name__}: {exc}"})
                continue
            entries.append(compare_image(img, x, bits, x_a, decode_b, None if proxy else "cuda"))
    return {**out, "images": entries}


def _drop(a: float, b: float) -> float:
    """PSNR lost by decoding on B (inf − inf = 0: both lossless)."""
    if a == b:
        return 0.0
    return a - b
