"""Runs one rate point in its own process and writes a `RateResult` as JSON.

Usage (by the runner, not by people): `python -m profiler.worker JOB.json RESULT.json`.

Per image, in order: one counted encode and decode (the dispatch-mode counter rides along; this run
is also the first warm-up), the remaining warm-ups, then `repeats` timed encodes and `repeats` timed
decodes. Only `encode()`/`decode()` are inside the timed region: never model loading, image reading or
file writing. Progress goes to stdout as JSON lines; the result goes to RESULT.json.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import os
import json
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import memory, timing
from .codec import check_codec
from .conditions import TestConditions
from .counting import count_call
from .counting.crosscheck import crosscheck_codec
from .counting.meta import count_resolutions
from .environment import worker_environment
from .errors import InputError, SubmissionError
from .images import TestImage, load_images
from .interop import choose_pair, compare_image, measure_interop, proxy_decoder
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


def _measure_image(codec, img: TestImage, cond: TestConditions, devices: list[str],
                   baseline_mib: float | None = None, interop_entries: list | None = None) -> ImageResult:
    """Count, warm up, then time and take the memory peaks of encode and decode on one image (CPU).

    `baseline_mib` is the worker's RSS once the model was loaded: CPU peaks are given above it too.
    With `interop_entries`, the counted run's bitstream is also decoded on the interoperability proxy
    (profiler/interop.py) and its entry appended: the counted run is device A's run, not repeated.
    """
    x = img.tensor("cpu")
    with torch.no_grad():
        bits, enc_count = count_call(lambda: _call("encode", codec.encode, x),
                                     roots={"encoder": codec.encoder}, root_name="encoder")
        bits = _check_bitstream(bits)
        x_hat, dec_count = count_call(lambda: _call("decode", codec.decode, bits),
                                      roots={"decoder": codec.decoder}, root_name="decoder")
        x_hat = _check_decoded(x_hat, x)
        psnr = psnr_rgb(x, x_hat)
        quality = image_quality(x, x_hat)
        if interop_entries is not None:
            interop_entries.append(compare_image(img, x, bits, x_hat, proxy_decoder(codec)))
        del x_hat   # not held during the memory peaks below

        for _ in range(max(0, cond.timing.warmup - 1)):
            _call("encode", codec.encode, x)
            _call("decode", codec.decode, bits)
        reps = cond.timing.repeats
        # Only the call is inside the timed region; each part's peak RSS is reset just before its runs.
        with memory.CpuPeak(baseline_mib) as enc_mem:
            enc_times, _ = timing.time_cpu(lambda: _call("encode", codec.encode, x), reps)
        with memory.CpuPeak(baseline_mib) as dec_mem:
            dec_times, _ = timing.time_cpu(lambda: _call("decode", codec.decode, bits), reps)

    w, h = img.width, img.height
    return ImageResult(
        name=img.name, width=img.width, height=img.height, bytes=len(bits),
        bpp=8.0 * len(bits) / (img.width * img.height), psnr_rgb=psnr,
        counts={"encoder": enc_count.to_dict(), "decoder": dec_count.to_dict()},
        timing={"cpu": {"encode": timing.summarize(enc_times).to_dict(w, h),
                        "decode": timing.summarize(dec_times).to_dict(w, h)}},
        memory={"cpu": {"encode": enc_mem.result.to_dict(), "decode": dec_mem.result.to_dict()}},
        quality=quality,
    )


def _measure_cuda(build, rate, images: list[TestImage], cond: TestConditions, results: list[ImageResult],
                  rate_result: RateResult | None = None) -> None:
    """GPU time and memory per image, on a codec built for the CUDA device.

    Per image: one untimed encode and decode (first warm-up), the remaining warm-ups, then `repeats`
    event-timed calls per part with the allocator's peak reset before each part, and NVML's device-level
    used memory after each part. With `timing.min_gpu_memory`, the minimum allocator limit of each part
    on the largest image is found by bisection (memory.min_cuda_memory).
    """
    device = torch.device("cuda", torch.cuda.current_device())
    settings = timing.gpu_settings(cond.timing.cudnn_benchmark, cond.timing.allow_tf32)
    codec = _call("build", build, rate, device)
    torch.cuda.synchronize(device)
    model_mib = torch.cuda.memory_allocated(device) / memory.MIB
    nvml_index = memory.nvml_index(device.index, os.environ.get("CUDA_VISIBLE_DEVICES"))
    with torch.no_grad():
        for img, res in zip(images, results):
            x = img.tensor(device)
            bits = _check_bitstream(_call("encode", codec.encode, x))
            _call("decode", codec.decode, bits)
            for _ in range(max(0, cond.timing.warmup - 1)):
                _call("encode", codec.encode, x)
                _call("decode", codec.decode, bits)
            w, h = img.width, img.height
            step_mem = {}
            step_times = {}
            for step, fn in (("encode", lambda: _call("encode", codec.encode, x)),
                             ("decode", lambda: _call("decode", codec.decode, bits))):
                memory.cuda_peak_begin(device)
                times, _ = timing.time_cuda(fn, cond.timing.repeats)
                mem = memory.cuda_peak_end(device)
                mem["model_allocated_mib"] = model_mib
                nvml = memory.nvml_device_used_mib(nvml_index)
                mem["nvml_used_mib"] = nvml["used_mib"] if nvml else None
                step_mem[step] = mem
                step_times[step] = timing.summarize(times).to_dict(w, h)
            res.timing["cuda"] = step_times
            res.memory["cuda"] = step_mem
        if rate_result is not None:
            rate_result.environment["gpu_settings"] = settings
            if cond.timing.min_gpu_memory:
                _min_gpu_memory(codec, images, results, device, rate_result)


def _min_gpu_memory(codec, images: list[TestImage], results: list[ImageResult], device, rate_result: RateResult) -> None:
    """Bisection on the allocator limit for encode and decode of the largest image: the JPEG AI figure."""
    k = max(range(len(images)), key=lambda i: images[i].width * images[i].height)
    img = images[k]
    x = img.tensor(device)
    bits = _check_bitstream(_call("encode", codec.encode, x))
    out = {}
    for step, fn in (("encode", lambda: _call("encode", codec.encode, x)),
                     ("decode", lambda: _call("decode", codec.decode, bits))):
        peak = int(results[k].memory["cuda"][step]["max_allocated_mib"] * memory.MIB)
        out[step] = {"image": img.name, **memory.min_cuda_memory(fn, device, peak)}
    rate_result.memory.setdefault("cuda", {})["min"] = out


def _warm_suite() -> None:
    """Pay the suite's own one-time costs before the worker's memory baseline is taken.

    The first dispatch-mode count imports sympy/mpmath and more (~170 MiB of RSS measured on torch
    2.14): that is the suite's, not the codec's, and must not show up as memory the decoder needs.
    """
    with torch.no_grad():
        count_call(lambda: torch.nn.functional.conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3)) + 1,
                   roots={}, root_name="warm-up")


def _summarize_rate(result: RateResult) -> None:
    """Per rate point (= per model): timing statistics over its images, and memory peaks (max over images)."""
    for dev in ("cpu", "cuda"):
        for step in ("encode", "decode"):
            per_image = [(i.timing[dev][step], i.width, i.height) for i in result.images
                         if i.timing.get(dev, {}).get(step)]
            if per_image and len(per_image) == len(result.images):
                result.timing.setdefault(dev, {})[step] = timing.rate_point_stats(per_image)
            peaks = [i.memory[dev][step] for i in result.images if i.memory.get(dev, {}).get(step)]
            if peaks:
                keys = [k for k, v in peaks[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
                summary = {k: max(p[k] for p in peaks if p.get(k) is not None) for k in keys
                           if any(p.get(k) is not None for p in peaks)}
                result.memory.setdefault(dev, {})[step] = summary


_ALLOCATION_FAILURES = ("can't allocate memory", "Cannot allocate memory", "MemoryError", "std::bad_alloc",
                        "out of memory")


def _is_allocation_failure(message: str) -> bool:
    return any(s in message for s in _ALLOCATION_FAILURES)


def _classify(exc: BaseException, tb_text: str, submission_dir: Path, memory_limit_mib: int) -> dict:
    """The error record of an exception that escaped the measurement: the submission's when its code is
    on the stack, a memory failure when an allocation failed, otherwise the suite's."""
    message = f"{type(exc).__name__}: {exc}"
    frames = traceback.extract_tb(exc.__traceback__)
    in_submission = any(Path(f.filename).resolve().is_relative_to(submission_dir) for f in frames)
    if isinstance(exc, SystemExit):
        return {"stage": "submission code", "message": f"the submission called sys.exit({exc.code!r})",
                "traceback": tb_text, "kind": "submission"}
    if isinstance(exc, MemoryError) or _is_allocation_failure(message):
        return {"stage": "memory", "message": f"out of memory under the worker's limit of {memory_limit_mib} MiB: "
                                              f"{message}", "traceback": tb_text, "kind": "memory"}
    if in_submission:
        return {"stage": "submission code", "message": message, "traceback": tb_text, "kind": "submission"}
    return {"stage": "suite", "message": f"internal error of jpegai-profile (please report it): {message}",
            "traceback": tb_text, "kind": "suite"}


def run_job(job: dict) -> RateResult:
    cond = TestConditions.from_dict(job["conditions"])
    devices = list(job.get("devices", cond.timing.devices))
    torch.set_num_threads(cond.timing.threads)
    seed = int(job.get("seed", 0))
    # Every generator a submission may draw from, so reruns give bit-identical counts and bitstreams.
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    # The parent validated the manifest and the weights before starting any worker.
    sub = load_submission(job["submission"], check_weights=False)
    rate = next(r for r in sub.rates if r.index == job["rate_index"])
    result = RateResult(index=rate.index, target_bpp=rate.target_bpp, threads=torch.get_num_threads())
    try:
        rate = with_weights(rate, sub.manifest)
        if rate.weights is not None:
            result.weights = {"file": str(rate.weights.relative_to(sub.directory)),
                              "sha256": hashlib.sha256(rate.weights.read_bytes()).hexdigest(), "source": "file"}
        images = load_images(cond.images)
        _emit(event="start", images=len(images))
        _warm_suite()
        modules_before = set(sys.modules)
        build = load_entry(sub)
        codec = _call("build", build, rate, torch.device("cpu"))
        gc.collect()
        baseline_mib = memory.rss_mib()   # the worker once the model is loaded: CPU peaks are also given above it
        result.environment = worker_environment(modules_before, set(sys.modules))
        result.worker["model_loaded_rss_mib"] = baseline_mib
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

        # On a CPU-only machine the interoperability pair is a proxy on this CPU: its device-A runs are
        # the counted runs below. A real second device is measured after the CPU figures (interop.py).
        proxy_entries = [] if choose_pair(list(devices))[1] else None
        for n, img in enumerate(images):
            _emit(event="image", name=img.name, n=n)
            result.images.append(_measure_image(codec, img, cond, devices, baseline_mib, proxy_entries))

        # Counting at the resolutions of profile.toml (worst-case decoder) and the cross-check against
        # other counters: profiler/counting/meta.py and crosscheck.py.
        _emit(event="resolutions")
        count_resolutions(codec, cond, result)
        crosscheck_codec(codec, images, cond, result)

        # Device interoperability: decode this rate point's bitstreams on another device (or a proxy
        # that changes float arithmetic), for the compliance rule: profiler/interop.py.
        measure_interop(codec, build, rate, images, cond, devices, result, proxy_entries)

        if "cuda" not in devices:
            result.not_measured["gpu"] = "not requested: --device cpu"
        elif not torch.cuda.is_available():
            result.not_measured["gpu"] = "no CUDA device"
        else:
            _emit(event="cuda")
            _measure_cuda(build, rate, images, cond, result.images, result)
        _summarize_rate(result)
    except SubmissionError as exc:
        result.status = "failed"
        result.error = {"stage": exc.stage, "message": str(exc), "traceback": exc.traceback_text, "kind": "submission"}
        if _is_allocation_failure(str(exc)):
            result.error["kind"] = "memory"
            result.error["message"] = f"out of memory under the worker's limit of {cond.worker.memory_limit_mib} MiB: {exc}"
    except InputError as exc:
        result.status = "failed"
        result.error = {"stage": "input", "message": str(exc), "traceback": "", "kind": "input"}
    except (Exception, SystemExit) as exc:
        # Raised outside _call (a measurement step calling the codec, or the suite itself): whose it is
        # is read from the traceback, so a suite bug is never blamed on the submission or vice versa.
        result.status = "failed"
        result.error = _classify(exc, traceback.format_exc(), sub.directory, cond.worker.memory_limit_mib)
    result.worker.update({"peak_rss_mib": memory.peak_rss_mib(), "pid": os.getpid()})
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
