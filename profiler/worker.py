"""Runs one rate point in its own process and writes a `RateResult` as JSON.

Usage (by the runner, not by people): `python -m profiler.worker JOB.json RESULT.json`.

Per image, in order: one counted encode and decode (the dispatch-mode counter rides along; this run
is also the first warm-up), the remaining warm-ups, then `repeats` timed encodes and `repeats` timed
decodes. Only `encode()`/`decode()` are inside the timed region: never model loading, image reading or
file writing. Progress goes to stdout as JSON lines; the result goes to RESULT.json.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from . import memory, timing
from .codec import check_codec
from .conditions import TestConditions
from .counting import count_call
from .counting.crosscheck import crosscheck_codec
from .counting.meta import count_resolutions
from .errors import InputError, SubmissionError
from .images import TestImage, load_images
from .interop import measure_interop
from .params import count_model
from .precision import check_codec_precision
from .quality import image_quality, psnr_rgb
from .report import ImageResult, RateResult
from .submission import load_entry, load_submission, with_weights


def _emit(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def _call(stage: str, fn, *args):
    """Call the submission's code; its exceptions become SubmissionErrors with the traceback."""
    try:
        return fn(*args)
    except (SubmissionError, InputError):
        raise
    except Exception as exc:
        raise SubmissionError(stage, f"{type(exc).__name__}: {exc}", traceback.format_exc()) from None


def _check_bitstream(bits: Any) -> bytes:
    if isinstance(bits, (bytearray, memoryview)):
        bits = bytes(bits)
    if not isinstance(bits, bytes):
        raise SubmissionError("encode", f"encode() must return bytes, got {type(bits).__name__}")
    return bits


def _check_decoded(x_hat: Any, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x_hat, torch.Tensor) or tuple(x_hat.shape) != tuple(x.shape):
        shape = tuple(x_hat.shape) if isinstance(x_hat, torch.Tensor) else type(x_hat).__name__
        raise SubmissionError("decode", f"decode() must return a tensor of shape {tuple(x.shape)}, got {shape}")
    return x_hat


def _measure_image(codec, img: TestImage, cond: TestConditions, devices: list[str]) -> ImageResult:
    x = img.tensor("cpu")
    with torch.no_grad():
        bits, enc_count = count_call(lambda: _call("encode", codec.encode, x),
                                     roots={"encoder": codec.encoder}, root_name="encoder")
        bits = _check_bitstream(bits)
        x_hat, dec_count = count_call(lambda: _call("decode", codec.decode, bits),
                                      roots={"decoder": codec.decoder}, root_name="decoder")
        x_hat = _check_decoded(x_hat, x)
        psnr = psnr_rgb(x, x_hat)

        for _ in range(max(0, cond.timing.warmup - 1)):
            codec.encode(x)
            codec.decode(bits)
        reps = cond.timing.repeats
        with memory.CpuPeak() as enc_mem:
            enc_times, _ = timing.time_cpu(lambda: codec.encode(x), reps)
        with memory.CpuPeak() as dec_mem:
            dec_times, _ = timing.time_cpu(lambda: codec.decode(bits), reps)

    return ImageResult(
        name=img.name, width=img.width, height=img.height, bytes=len(bits),
        bpp=8.0 * len(bits) / (img.width * img.height), psnr_rgb=psnr,
        counts={"encoder": enc_count.to_dict(), "decoder": dec_count.to_dict()},
        timing={"cpu": {"encode": timing.summarize(enc_times).to_dict(),
                        "decode": timing.summarize(dec_times).to_dict()}},
        memory={"cpu": {"encode": enc_mem.result.to_dict(), "decode": dec_mem.result.to_dict()}},
        quality=image_quality(x, x_hat),
    )


def _measure_cuda(build, rate, images: list[TestImage], cond: TestConditions, results: list[ImageResult]) -> None:
    """GPU time and memory per image, on a codec built for the CUDA device."""
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = cond.timing.cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = cond.timing.allow_tf32
    torch.backends.cudnn.allow_tf32 = cond.timing.allow_tf32
    codec = _call("build", build, rate, device)
    with torch.no_grad():
        for img, res in zip(images, results):
            x = img.tensor(device)
            bits = _check_bitstream(_call("encode", codec.encode, x))
            codec.decode(bits)
            for _ in range(max(0, cond.timing.warmup - 1)):
                codec.encode(x)
                codec.decode(bits)
            memory.cuda_peak_begin(device)
            enc_times, _ = timing.time_cuda(lambda: codec.encode(x), cond.timing.repeats)
            enc_mem = memory.cuda_peak_end(device)
            memory.cuda_peak_begin(device)
            dec_times, _ = timing.time_cuda(lambda: codec.decode(bits), cond.timing.repeats)
            dec_mem = memory.cuda_peak_end(device)
            nvml = memory.nvml_device_used_mib(torch.cuda.current_device())
            if nvml:
                enc_mem["nvml_used_mib"] = dec_mem["nvml_used_mib"] = nvml["used_mib"]
            res.timing["cuda"] = {"encode": timing.summarize(enc_times).to_dict(),
                                  "decode": timing.summarize(dec_times).to_dict()}
            res.memory["cuda"] = {"encode": enc_mem, "decode": dec_mem}


def run_job(job: dict) -> RateResult:
    cond = TestConditions.from_dict(job["conditions"])
    devices = list(job.get("devices", cond.timing.devices))
    torch.set_num_threads(cond.timing.threads)
    torch.manual_seed(int(job.get("seed", 0)))

    sub = load_submission(job["submission"])
    rate = next(r for r in sub.rates if r.index == job["rate_index"])
    result = RateResult(index=rate.index, target_bpp=rate.target_bpp, threads=torch.get_num_threads())
    try:
        rate = with_weights(rate, sub.manifest)
        if rate.weights is not None:
            result.weights = {"file": str(rate.weights.relative_to(sub.directory)),
                              "sha256": hashlib.sha256(rate.weights.read_bytes()).hexdigest(), "source": "file"}
        images = load_images(cond.images)
        _emit(event="start", images=len(images))
        build = load_entry(sub)
        codec = _call("build", build, rate, torch.device("cpu"))
        problems = check_codec(codec)
        if problems:
            raise SubmissionError("build", "build() did not return a codec: " + "; ".join(problems))
        if rate.weights is None:
            result.weights = {"file": None, "sha256": None,
                              "source": str(getattr(codec, "weights_source", "none named in the manifest"))}
        params = count_model(codec.encoder, codec.decoder)
        result.params = dataclasses.asdict(params)
        result.precision = {"declared": dict(sub.precision), "weights_dtypes": params.dtypes,
                            "offending": check_codec_precision(codec, sub.precision)}

        for n, img in enumerate(images):
            _emit(event="image", name=img.name, n=n)
            result.images.append(_measure_image(codec, img, cond, devices))

        # Counting at the resolutions of profile.toml (worst-case decoder) and the cross-check against
        # other counters: profiler/counting/meta.py and crosscheck.py.
        _emit(event="resolutions")
        count_resolutions(codec, cond, result)
        crosscheck_codec(codec, images, cond, result)

        # Device interoperability: decode this rate point's bitstreams on another device (or a proxy
        # that changes float arithmetic), for the compliance rule: profiler/interop.py.
        measure_interop(codec, build, rate, images, cond, devices, result)

        if "cuda" not in devices:
            result.not_measured["gpu"] = "not requested (--device cpu)"
        elif not torch.cuda.is_available():
            result.not_measured["gpu"] = "no CUDA device"
        else:
            _emit(event="cuda")
            _measure_cuda(build, rate, images, cond, result.images)
    except SubmissionError as exc:
        result.status = "failed"
        result.error = {"stage": exc.stage, "message": str(exc), "traceback": exc.traceback_text, "kind": "submission"}
    except InputError as exc:
        result.status = "failed"
        result.error = {"stage": "input", "message": str(exc), "traceback": "", "kind": "input"}
    result.worker = {"peak_rss_mib": memory.peak_rss_mib()}
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job_path, out_path = Path(argv[0]), Path(argv[1])
    job = json.loads(job_path.read_text())
    t0 = time.perf_counter()
    result = run_job(job)
    result.worker["wall_s"] = time.perf_counter() - t0
    tmp = out_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(result)))
    tmp.replace(out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
