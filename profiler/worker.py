"""Runs one rate point in its own process and writes a `RateResult` as JSON.

Usage (by the runner, not by people): `python -m profiler.worker JOB.json RESULT.json`.

Per image, in order: one counted encode and decode (the dispatch-mode counter rides along; this run
is also the first warm-up), the remaining warm-ups, then `repeats` timed encodes and `repeats` timed
decodes. Only `encode()`/`decode()` are inside the timed region: never model loading, image reading or
file writing. Progress goes to the runner's progress pipe as JSON lines (never stdout, which the
submission shares); the result goes to RESULT.json.
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

from . import derive, memory, timing
from .codec import check_codec
from .conditions import TestConditions
from .counting import count_call
from .counting.crosscheck import crosscheck_codec
from .counting.meta import count_resolutions
from .environment import worker_environment
from .errors import InputError, SubmissionError
from .images import TestImage, load_images
from .interop import choose_pair, compare_image, measure_interop, proxy_decoder, reconstruction_problem
from .params import count_model
from .precision import check_codec_precision
from .model.report import ErrorRecord, Picture, RateResult
from .quality import image_quality, psnr_rgb, to_uint8
from .submission import load_entry, load_submission, with_weights


# The runner's progress pipe (profiler/runner.py run_limited): opened in main() before the submission is
# imported; its fd number leaves the environment and nothing the worker starts inherits it.
_PROGRESS = None


def _progress_channel():
    value = os.environ.pop("JPEGAI_PROGRESS_FD", "")
    try:
        fd = int(value)
        os.set_inheritable(fd, False)
        return os.fdopen(fd, "w", buffering=1, encoding="utf-8")
    except (ValueError, OSError):
        return None


def _emit(**event: Any) -> None:
    """One progress event to the runner (nothing when run without one). Never on stdout: that is the
    submission's too, and only captured."""
    if _PROGRESS is None:
        return
    try:
        _PROGRESS.write(json.dumps(event) + "\n")
        _PROGRESS.flush()
    except (OSError, ValueError):
        pass


def _call(stage: str, fn, *args):
    """Call the submission's code; its exceptions become SubmissionErrors with the traceback."""
    try:
        return fn(*args)
    except (SubmissionError, InputError):
        raise
    except Exception as exc:
        raise SubmissionError(stage, _exception_text(exc), traceback.format_exc()) from None


def _exception_text(exc: BaseException) -> str:
    """`Type: message` of the submission's exception, as written (markup is escaped by each renderer);
    an exception whose str() itself raises still gives one line."""
    try:
        text = str(exc)
    except Exception as inner:
        text = f"<str() of the exception raised {type(inner).__name__}>"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_bitstream(bits: Any) -> bytes:
    if isinstance(bits, (bytearray, memoryview)):
        bits = bytes(bits)
    if not isinstance(bits, bytes):
        raise SubmissionError("encode", f"encode() must return bytes, got {type(bits).__name__}")
    return bits


def _check_decoded(x_hat: Any, x: torch.Tensor) -> torch.Tensor:
    """The decoded picture, refused (the submission's error, stage decode) unless it is a floating-point
    tensor of the input's shape on the input's device with every value finite (interop.reconstruction_problem):
    a NaN picture would otherwise score as black, a uint8 one be clamped as floats."""
    problem = reconstruction_problem(x_hat, tuple(x.shape), x.device)
    if problem:
        raise SubmissionError("decode", problem)
    return x_hat


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _measure_image(codec, img: TestImage, cond: TestConditions, baseline_mib: float | None = None,
                   interop_proxy: bool = False) -> tuple[dict, dict | None]:
    """Count, warm up, then time and take the memory peaks of encode and decode on one image (CPU).

    Returns (the picture's `Picture` entry as a dict, its interoperability entry or None).
    `baseline_mib` is the worker's RSS once the model was loaded: CPU peaks are given above it too.
    With `interop_proxy`, the counted run's bitstream is also decoded on the interoperability proxy
    (profiler/interop.py): the counted run is device A's run, not repeated.
    """
    x = img.tensor("cpu")
    interop_entry = None
    with torch.no_grad():
        bits, enc_count = count_call(lambda: _call("encode", codec.encode, x),
                                     roots={"encoder": codec.encoder}, root_name="encoder")
        bits = _check_bitstream(bits)
        x_hat, dec_count = count_call(lambda: _call("decode", codec.decode, bits),
                                      roots={"decoder": codec.decoder}, root_name="decoder")
        x_hat = _check_decoded(x_hat, x)
        psnr = psnr_rgb(x, x_hat)
        quality = image_quality(x, x_hat)
        decoded_sha256 = _sha256(to_uint8(x_hat).cpu().numpy().tobytes())
        if interop_proxy:
            interop_entry = compare_image(img, x, bits, x_hat, proxy_decoder(codec), "cpu")
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
    picture = dict(
        name=img.name, width=img.width, height=img.height, bytes=len(bits),
        bpp=8.0 * len(bits) / (img.width * img.height), psnr_rgb=psnr,
        bitstream_sha256=_sha256(bits), decoded_sha256=decoded_sha256,
        counts={"encoder": enc_count.to_dict(), "decoder": dec_count.to_dict()},
        timing={"cpu": {"encode": timing.summarize(enc_times).to_dict(w, h),
                        "decode": timing.summarize(dec_times).to_dict(w, h)}},
        memory={"cpu": {"encode": enc_mem.result.to_dict(), "decode": dec_mem.result.to_dict()}},
        quality=quality,
    )
    return picture, interop_entry


def _measure_cuda(build, rate, images: list[TestImage], cond: TestConditions) -> dict:
    """GPU time and memory per image, on a codec built for the CUDA device.

    Per image: one untimed encode and decode (first warm-up), the remaining warm-ups, then `repeats`
    event-timed calls per part with the allocator's peak reset before each part, and NVML's device-level
    used memory after each part. With `timing.min_gpu_memory`, the minimum allocator limit of each part
    on the largest image is found by bisection (memory.min_cuda_memory).
    Returns {"timing": [per image {part: stats}], "memory": [per image {part: peaks}], "gpu_settings",
    "min": {part: …} or None}.
    """
    device = torch.device("cuda", torch.cuda.current_device())
    settings = timing.gpu_settings(cond.timing.cudnn_benchmark, cond.timing.allow_tf32)
    codec = _call("build", build, rate, device)
    torch.cuda.synchronize(device)
    model_mib = torch.cuda.memory_allocated(device) / memory.MIB
    nvml_index = memory.nvml_index(device.index, os.environ.get("CUDA_VISIBLE_DEVICES"))
    per_timing, per_memory = [], []
    with torch.no_grad():
        for img in images:
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
            per_timing.append(step_times)
            per_memory.append(step_mem)
        minimum = _min_gpu_memory(codec, images, per_memory, device) if cond.timing.min_gpu_memory else None
    return {"timing": per_timing, "memory": per_memory, "gpu_settings": settings, "min": minimum}


def _min_gpu_memory(codec, images: list[TestImage], per_memory: list[dict], device) -> dict:
    """Bisection on the allocator limit for encode and decode of the largest image: the JPEG AI figure."""
    k = max(range(len(images)), key=lambda i: images[i].width * images[i].height)
    img = images[k]
    x = img.tensor(device)
    bits = _check_bitstream(_call("encode", codec.encode, x))
    out = {}
    for step, fn in (("encode", lambda: _call("encode", codec.encode, x)),
                     ("decode", lambda: _call("decode", codec.decode, bits))):
        peak = int(per_memory[k][step]["max_allocated_mib"] * memory.MIB)
        out[step] = {"image": img.name, **memory.min_cuda_memory(fn, device, peak)}
    return out


def _warm_suite() -> None:
    """Pay the suite's own one-time costs before the worker's memory baseline is taken.

    The first dispatch-mode count imports sympy/mpmath and more (~170 MiB of RSS measured on torch
    2.14): that is the suite's, not the codec's, and must not show up as memory the decoder needs.
    """
    with torch.no_grad():
        count_call(lambda: torch.nn.functional.conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3)) + 1,
                   roots={}, root_name="warm-up")


def _rate_summaries(pictures: list[Picture]) -> tuple[dict, dict]:
    """Per rate point (= per model): timing statistics over its images, and memory peaks (max over images)."""
    timing_out: dict = {}
    memory_out: dict = {}
    for dev in ("cpu", "cuda"):
        for step in ("encode", "decode"):
            inputs = derive.rate_timing_inputs(pictures, dev, step)
            if inputs:
                timing_out.setdefault(dev, {})[step] = timing.rate_point_stats(inputs)
            peaks = derive.rate_memory_peaks(pictures, dev, step)
            if peaks:
                memory_out.setdefault(dev, {})[step] = peaks
    return timing_out, memory_out


_ALLOCATION_FAILURES = ("can't allocate memory", "Cannot allocate memory", "MemoryError", "std::bad_alloc",
                        "out of memory")


def _is_allocation_failure(message: str) -> bool:
    return any(s in message for s in _ALLOCATION_FAILURES)


def _classify(exc: BaseException, tb_text: str, submission_dir: Path, memory_limit_mib: int) -> ErrorRecord:
    """The error record of an exception that escaped the measurement: the submission's when its code is
    on the stack, a memory failure when an allocation failed, otherwise the suite's."""
    message = f"{type(exc).__name__}: {exc}"
    frames = traceback.extract_tb(exc.__traceback__)
    in_submission = any(Path(f.filename).resolve().is_relative_to(submission_dir) for f in frames)
    if isinstance(exc, SystemExit):
        return ErrorRecord(kind="submission", stage="submission code",
                           message=f"the submission called sys.exit({exc.code!r})", traceback=tb_text)
    if isinstance(exc, MemoryError) or _is_allocation_failure(message):
        return _memory_error(message, memory_limit_mib, tb_text)
    if in_submission:
        return ErrorRecord(kind="submission", stage="submission code", message=message, traceback=tb_text)
    return ErrorRecord(kind="suite", stage="suite", message=f"internal error of jpegai-profile (please report it): "
                       f"{message}", traceback=tb_text)


def _memory_error(message: str, memory_limit_mib: int, tb_text: str) -> ErrorRecord:
    return ErrorRecord(kind="memory", stage="memory", traceback=tb_text,
                       message=f"out of memory under the worker's limit of {memory_limit_mib} MiB: {message}")


def _not_measured(pairs: dict[str, tuple[str, str]]) -> dict[str, dict]:
    return {k: {"code": code, "reason": reason} for k, (code, reason) in pairs.items()}


def run_job(job: dict) -> RateResult:
    """Measure one rate point. Steps return values; only here are they assembled into the RateResult,
    once, at the end: on a failure the figures measured before it are kept beside the error."""
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
    got: dict[str, Any] = {"index": rate.index, "target_bpp": rate.target_bpp, "threads": torch.get_num_threads()}
    worker: dict[str, Any] = {}
    missing: dict[str, tuple[str, str]] = {}
    pictures: list[dict] = []
    try:
        rate = with_weights(rate, sub.manifest)
        if rate.weights is not None:
            got["weights"] = {"file": str(rate.weights.relative_to(sub.directory)),
                              "sha256": _sha256(rate.weights.read_bytes()), "source": "file"}
        images = load_images(cond.images)
        _emit(event="start", images=len(images))
        _warm_suite()
        modules_before = set(sys.modules)
        build = load_entry(sub)
        codec = _call("build", build, rate, torch.device("cpu"))
        gc.collect()
        baseline_mib = memory.rss_mib()   # the worker once the model is loaded: CPU peaks are also given above it
        got["environment"] = worker_environment(modules_before, set(sys.modules))
        worker["model_loaded_rss_mib"] = baseline_mib
        problems = check_codec(codec)
        if problems:
            raise SubmissionError("build", "build() did not return a codec: " + "; ".join(problems))
        if rate.weights is None:
            got["weights"] = {"file": None, "sha256": None,
                              "source": str(getattr(codec, "weights_source", "none named in the manifest"))}
        params = count_model(codec.encoder, codec.decoder)
        got["params"] = dataclasses.asdict(params)
        got["precision"] = {"declared": dict(sub.precision), "weights_dtypes": params.dtypes,
                            "offending": check_codec_precision(codec, sub.precision)}

        # On a CPU-only machine the interoperability pair is a proxy on this CPU: its device-A runs are
        # the counted runs below. A real second device is measured after the CPU figures (interop.py).
        proxy = choose_pair(list(devices))[1]
        proxy_entries = []
        for n, img in enumerate(images):
            _emit(event="image", name=img.name, n=n)
            picture, entry = _measure_image(codec, img, cond, baseline_mib, interop_proxy=proxy)
            pictures.append(picture)
            if entry is not None:
                proxy_entries.append(entry)

        # Counting at the resolutions of profile.toml (worst-case decoder) and the cross-check against
        # other counters: profiler/counting/meta.py and crosscheck.py.
        _emit(event="resolutions")
        first = pictures[0] if pictures else None
        got["resolutions"], nm = count_resolutions(
            codec, cond.counting.resolutions,
            (first["name"], first["width"], first["height"], first["counts"]["decoder"]["macs"]) if first else None)
        missing.update(nm)
        got["crosscheck"], nm = crosscheck_codec(codec)
        missing.update(nm)

        # Device interoperability: decode this rate point's bitstreams on another device (or a proxy
        # that changes float arithmetic), for the compliance rule: profiler/interop.py.
        got["interop"] = measure_interop(codec, build, rate, images, devices, proxy_entries if proxy else None)

        if "cuda" not in devices:
            missing["gpu"] = ("not-requested", "not requested: --device cpu")
        elif not torch.cuda.is_available():
            missing["gpu"] = ("no-device", "no CUDA device")
        else:
            _emit(event="cuda")
            cuda = _measure_cuda(build, rate, images, cond)
            pictures = [{**p, "timing": {**p["timing"], "cuda": t}, "memory": {**p["memory"], "cuda": m}}
                        for p, t, m in zip(pictures, cuda["timing"], cuda["memory"])]
            got["environment"] = {**got["environment"], "gpu_settings": cuda["gpu_settings"]}
            if cuda["min"] is not None:
                got["min_gpu_memory"] = cuda["min"]
    except SubmissionError as exc:
        got["status"] = "failed"
        got["error"] = (_memory_error(str(exc), cond.worker.memory_limit_mib, exc.traceback_text)
                        if _is_allocation_failure(str(exc)) else
                        ErrorRecord(kind="submission", stage=exc.stage, message=str(exc), traceback=exc.traceback_text))
    except InputError as exc:
        got["status"] = "failed"
        got["error"] = ErrorRecord(kind="input", stage="input", message=str(exc))
    except (Exception, SystemExit) as exc:
        # Raised outside _call (a measurement step calling the codec, or the suite itself): whose it is
        # is read from the traceback, so a suite bug is never blamed on the submission or vice versa.
        got["status"] = "failed"
        got["error"] = _classify(exc, traceback.format_exc(), sub.directory, cond.worker.memory_limit_mib)
    worker.update({"peak_rss_mib": memory.peak_rss_mib(), "pid": os.getpid()})
    return assemble(got, pictures, missing, worker)


def assemble(got: dict, pictures: list[dict], missing: dict[str, tuple[str, str]], worker: dict) -> RateResult:
    """The RateResult from the steps' values (validated against the report model here, in the worker)."""
    typed = [Picture.model_validate(p) for p in pictures]
    timing_out, memory_out = _rate_summaries(typed)
    minimum = got.pop("min_gpu_memory", None)
    if minimum is not None:
        memory_out.setdefault("cuda", {})["min"] = minimum
    return RateResult.model_validate({**got, "images": typed, "not_measured": _not_measured(missing),
                                      "worker": worker, "timing": timing_out, "memory": memory_out})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    global _PROGRESS
    _PROGRESS = _progress_channel()
    job_path, out_path = Path(argv[0]), Path(argv[1])
    job = json.loads(job_path.read_text())
    t0 = time.perf_counter()
    result = run_job(job)
    result = result.model_copy(update={"worker": result.worker.model_copy(
        update={"wall_s": time.perf_counter() - t0})})
    tmp = out_path.with_suffix(".tmp")
    tmp.write_text(result.model_dump_json())
    tmp.replace(out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
