"""Runs one rate point in its own process and writes a `RateResult` as JSON.

Usage (by the runner, not by people): `python -m profiler.worker JOB.json RESULT.json`.

Per image, in order: one counted encode and decode (the dispatch-mode counter rides along; this run
is also the first warm-up), the remaining warm-ups, then `repeats` timed encodes and `repeats` timed
decodes. Only `encode()`/`decode()` are inside the timed region: never model loading, image reading or
file writing. Progress goes to the runner's progress pipe as JSON lines (never stdout, which the
submission shares); the result goes to RESULT.json.
"""

from __future__ import annotations

import contextlib
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

from . import derive, memory, metrics, timing
from .codec import CountableNetworks, check_codec
from .conditions import TestConditions
from .counting import count_call
from .counting.crosscheck import crosscheck_codec
from .counting.resolutions import count_resolutions
from .counting.reuse import find_shared, network_fingerprint, picture_signatures, shared_crosscheck
from .environment import worker_environment
from .errors import InputError, SubmissionError
from .images import TestImage, load_images
from .interop import (choose_pair, compare_image, cuda_device_present, measure_interop, proxy_decoder,
                      reconstruction_problem)
from .params import count_model
from .precision import check_codec_precision
from .model.report import ErrorRecord, Picture, RateResult
from .quality import image_quality, psnr_rgb, to_uint8
from .slots import pin_process
from .submission import load_entry, load_submission, with_weights
from .tasks import measure_tasks
from .untimed import add_records, untimed
from .zygote import PRELOADED_ENV


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


# The runner's replies to slot requests (profiler/slots.py): a pipe whose read end's fd number is in
# JPEGAI_SLOT_FD; one JSON line per granted slot. Absent when the worker runs without a runner.
_SLOT_REPLIES = None


def _slot_channel():
    value = os.environ.pop("JPEGAI_SLOT_FD", "")
    try:
        fd = int(value)
        os.set_inheritable(fd, False)
        return os.fdopen(fd, "r", buffering=1, encoding="utf-8")
    except (ValueError, OSError):
        return None


@contextlib.contextmanager
def timing_slot(phase: str):
    """The timed phase `phase` ("cpu", "gpu") inside a timing slot: asks the runner for one and waits,
    pins every thread to its cores, and gives it back (pinned to the untimed cores again) when the block
    ends, also when it raises. Yields the slot's record ({"cores", "untimed_cores", …}) or None where the
    worker runs without a runner."""
    if _SLOT_REPLIES is None:
        yield None
        return
    _emit(event="slot", phase=phase)
    line = _SLOT_REPLIES.readline()
    try:
        slot = json.loads(line)
        cores, rest = [int(c) for c in slot["cores"]], [int(c) for c in slot["untimed_cores"]]
    except (ValueError, KeyError, TypeError):
        raise RuntimeError(f"no timing slot granted for the {phase} phase (runner replied {line[:200]!r})") from None
    pin_process(cores)
    try:
        yield slot
    finally:
        pin_process(rest)
        _emit(event="slot_release", phase=phase)


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


class SubmissionOutOfMemory(SubmissionError, torch.OutOfMemoryError):
    """An allocation failure in the submission's code: still a SubmissionError (the rate point records
    the traceback) and still an OutOfMemoryError, so the minimum-memory bisection sees an over-limit trial
    as "does not fit" and not as a failure of the rate point."""


def _call(stage: str, fn, *args):
    """Call the submission's code; its exceptions become SubmissionErrors with the traceback (CUDA
    allocation failures a SubmissionOutOfMemory, which keeps torch's OutOfMemoryError type)."""
    try:
        return fn(*args)
    except (SubmissionError, InputError):
        raise
    except Exception as exc:
        cls = SubmissionOutOfMemory if memory.is_cuda_oom(exc) else SubmissionError
        raise cls(stage, _exception_text(exc), traceback.format_exc()) from None


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


def _counted(codec, part: str, arg, record: bool = False):
    """One counted encode or decode: (output, the count as a PartCount dict, the CountResult with its
    recording when `record`, else None: counting/replay.py).

    A program codec (adapters/command.py) counts in its own process (`count_encode`/`count_decode`, the
    injected counter); where it cannot, the count is empty, incomplete and says why."""
    root = "encoder" if part == "encode" else "decoder"
    own = getattr(codec, f"count_{part}", None)
    if own is not None:
        out, count = _call(part, own, arg)
        if count is None:
            why = (getattr(codec, "macs_not_counted", None) or {}).get(part) or "the program was not counted"
            count = {"macs": 0, "complete": False, "unseen": [why]}
        return out, count, None
    out, c = count_call(lambda: _call(part, getattr(codec, part), arg), roots={root: getattr(codec, root)},
                        root_name=root, record=record)
    return out, c.to_dict(), (c if record else None)


def _process_runs(codec, fn, reps: int) -> dict:
    """A program codec's `reps` calls timed as whole processes (the codec's own wait4 figures)."""
    start = len(codec.runs)
    for _ in range(reps):
        fn()
    runs = codec.runs[start:]
    rss = [r["maxrss_mib"] for r in runs if r.get("maxrss_mib") is not None]
    gpu = [r["gpu_peak_mib"] for r in runs if r.get("gpu_peak_mib") is not None]
    sources = sorted({r["peak_source"] for r in runs if r.get("peak_source")})
    notes = [r["gpu_note"] for r in runs if r.get("gpu_note")]
    return {"stats": timing.summarize([r["wall_s"] for r in runs]), "peak_rss_mib": max(rss) if rss else None,
            "peak_source": ", ".join(sources) or "wait4 ru_maxrss", "gpu_peak_mib": max(gpu) if gpu else None,
            "gpu_note": notes[0] if notes else ""}


def _measure_image(codec, img: TestImage, cond: TestConditions, baseline_mib: float | None = None,
                   interop_proxy: bool = False, submitted: bytes | None = None, record: bool = False,
                   defer_untimed: bool = False) -> tuple[dict, dict | None, dict]:
    """Count, warm up, then time and take the memory peaks of encode and decode on one image (CPU).

    Returns (the picture's `Picture` entry as a dict, its interoperability entry or None, extras: the
    codec's own bitstream `own_bits` and its 8-bit reconstruction `decoded_u8`).
    `baseline_mib` is the worker's RSS once the model was loaded: CPU peaks are given above it too.
    With `interop_proxy`, the counted run's bitstream is also decoded on the interoperability proxy
    (profiler/interop.py): the counted run is device A's run, not repeated.
    With `submitted` (verify: a delivered bitstream), the decoder's figures are of that bitstream; the
    encoder's are of the original re-encoded.
    A program codec's calls are timed as whole processes into `process`, not into the in-process columns.
    With `defer_untimed` (a profile's timed phase, inside its timing slot), the quality metrics and the
    interoperability proxy are not run here: the picture has no `quality` yet, the entry is None, and
    extras hold `pending` for `untimed_image` after the slot (the reconstruction kept on disk, not in
    memory, so it is in none of the later pictures' memory peaks).
    """
    x = img.tensor("cpu")
    interop_entry = None
    program = bool(getattr(codec, "runs_as_program", False))
    with torch.no_grad():
        _emit(event="step", part="encode")     # what the runner names if the worker dies here
        own_bits, enc_count, enc_rec = _counted(codec, "encode", x, record)
        own_bits = _check_bitstream(own_bits)
        bits = own_bits if submitted is None else submitted
        if program:
            codec.size_hint = (img.width, img.height)
        _emit(event="step", part="decode")
        x_hat, dec_count, dec_rec = _counted(codec, "decode", bits, record)
        x_hat = _check_decoded(x_hat, x)
        psnr = psnr_rgb(x, x_hat)
        spent: dict[str, dict] = {}
        decoded_u8 = to_uint8(x_hat).cpu()
        decoded_sha256 = _sha256(decoded_u8.numpy().tobytes())
        pending = None
        if defer_untimed:
            pending = {"x_hat": _park(x_hat, img.name), "bits": bits, "psnr": psnr, "proxy": interop_proxy}
            quality = None
        else:
            quality, interop_entry, spent = untimed_image(codec, img, cond, {"x_hat": x_hat, "bits": bits,
                                                                              "psnr": psnr, "proxy": interop_proxy})
        del x_hat   # not held during the memory peaks below

        _emit(event="step", part="repeats")
        _emit(event="phase", phase="timing", image=img.name)
        for _ in range(max(0, cond.timing.warmup - 1)):
            _call("encode", codec.encode, x)
            _call("decode", codec.decode, bits)
        reps = cond.timing.repeats
        w, h = img.width, img.height
        extra: dict = {}
        if program:
            counted = {r["part"]: r["wall_s"] for r in codec.runs if r.get("counted")}
            enc = _process_runs(codec, lambda: _call("encode", codec.encode, x), reps)
            dec = _process_runs(codec, lambda: _call("decode", codec.decode, bits), reps)
            extra["process"] = {part: {"timing": r["stats"].to_dict(w, h), "peak_rss_mib": r["peak_rss_mib"],
                                       "peak_source": r["peak_source"], "gpu_peak_mib": r["gpu_peak_mib"],
                                       "gpu_not_measured": r["gpu_note"] if r["gpu_peak_mib"] is None else None,
                                       "counted_wall_s": counted.get(part)}
                                for part, r in (("encode", enc), ("decode", dec))}
        else:
            # Only the call is inside the timed region; each part's peak RSS is reset just before its runs.
            with memory.CpuPeak(baseline_mib) as enc_mem:
                enc_times = timing.time_cpu(lambda: _call("encode", codec.encode, x), reps)[0]
            with memory.CpuPeak(baseline_mib) as dec_mem:
                dec_times = timing.time_cpu(lambda: _call("decode", codec.decode, bits), reps)[0]
            extra["timing"] = {"cpu": {"encode": timing.summarize(enc_times).to_dict(w, h),
                                       "decode": timing.summarize(dec_times).to_dict(w, h)}}
            extra["memory"] = {"cpu": {"encode": enc_mem.result.to_dict(), "decode": dec_mem.result.to_dict()}}

    picture = dict(
        name=img.name, width=img.width, height=img.height, bytes=len(bits),
        bpp=8.0 * len(bits) / (img.width * img.height), psnr_rgb=psnr,
        bitstream_sha256=_sha256(bits), decoded_sha256=decoded_sha256,
        counts={"encoder": enc_count, "decoder": dec_count},
        **({"quality": quality} if quality is not None else {}), **extra,
    )
    recording = {"encoder": enc_rec, "decoder": dec_rec} if record else None
    return picture, interop_entry, {"own_bits": own_bits, "decoded_u8": decoded_u8, "untimed": spent,
                                    "recording": recording, "pending": pending}


def _park(x_hat: torch.Tensor, name: str) -> Path:
    """The reconstruction written to the worker's own folder (its working directory, a temporary one
    the runner removes), for the untimed steps after the timed phase."""
    path = Path.cwd() / f"x_hat-{_sha256(name.encode())[:16]}.pt"
    torch.save(x_hat.detach().cpu(), path)
    return path


def untimed_image(codec, img: TestImage, cond: TestConditions, pending: dict
                  ) -> tuple[dict, dict | None, dict[str, dict]]:
    """(quality metrics, interoperability proxy entry or None, records of the untimed steps) of one
    picture from its counted run's `pending` ({"x_hat": tensor or parked file, "bits", "psnr", "proxy"}),
    with every core the worker may use (profiler/untimed.py); threads are back to `timing.threads` after."""
    x = img.tensor("cpu")
    x_hat = pending["x_hat"]
    if isinstance(x_hat, Path):
        x_hat = torch.load(x_hat, weights_only=True)
        pending["x_hat"].unlink(missing_ok=True)
    spent: dict[str, dict] = {}
    entry = None
    with torch.no_grad():
        quality, spent["quality"] = untimed("quality", lambda: image_quality(x, x_hat), cond.timing.threads)
        if pending["proxy"]:
            entry, spent["interop proxy"] = untimed(
                "interop proxy", lambda: compare_image(img, x, pending["bits"], x_hat, proxy_decoder(codec), "cpu",
                                                       quality_a={"psnr_rgb": pending["psnr"], **quality}),
                cond.timing.threads)
    return quality, entry, spent


def cuda_instance_problem(cpu_codec, cuda_codec, device_type: str = "cuda") -> str | None:
    """Why the codec built for CUDA cannot stand for the CPU one on the GPU, or None.

    Its encoder's and decoder's state_dict must hold the same tensors as the CPU instance's (same names,
    dtypes and values, compared after `.cpu()`), every one of them on a `device_type` device: a codec
    that ignores `device` would otherwise have CPU time reported as GPU time.
    """
    for part in ("encoder", "decoder"):
        a, b = getattr(cpu_codec, part).state_dict(), getattr(cuda_codec, part).state_dict()
        if set(a) != set(b):
            diff = sorted(set(a) ^ set(b))[:3]
            return f"the {part} built for {device_type} holds other tensors than the CPU one ({', '.join(diff)})"
        for name, ta in a.items():
            tb = b[name]
            if tb.device.type != device_type:
                return (f"{part}.{name} is on {tb.device} in the codec built for {device_type}: the codec ignores "
                        "the device it is given, so its times would be CPU times")
            if tb.dtype != ta.dtype:
                return f"{part}.{name} is {tb.dtype} on {device_type} but {ta.dtype} on the CPU: another model"
            if not torch.equal(ta.detach().cpu(), tb.detach().cpu()):
                return (f"{part}.{name} differs between the CPU and the {device_type} instance: not the same weights "
                        "(a random initialisation that differs between two builds counts too)")
    return None


def _cuda_image(codec, img: TestImage, cond: TestConditions, device, model_mib: float, uuid: str | None,
                nvml_index: int | None) -> tuple[dict, dict]:
    """One picture on the GPU: (timing per part, memory per part). Its tensors die with this frame.

    The first (untimed) decode's picture is checked as on the CPU (`_check_decoded`: floats of the
    input's shape, on the GPU, every value finite): a broken one raises the submission's decode error,
    and the GPU phase records no GPU figure."""
    x = img.tensor(device)
    bits = _check_bitstream(_call("encode", codec.encode, x))
    _check_decoded(_call("decode", codec.decode, bits), x)
    for _ in range(max(0, cond.timing.warmup - 1)):
        _call("encode", codec.encode, x)
        _call("decode", codec.decode, bits)
    w, h = img.width, img.height
    step_mem, step_times = {}, {}
    for step in ("encode", "decode"):
        if step == "encode":
            def fn():
                return _call("encode", codec.encode, x)
        else:
            def fn():
                return _call("decode", codec.decode, bits)
        step_times[step], mem = _cuda_timed(fn, cond, device, w, h, uuid, nvml_index)
        mem["model_allocated_mib"] = model_mib
        step_mem[step] = mem
    return step_times, step_mem


def _cuda_timed(fn, cond: TestConditions, device, w: int, h: int, uuid: str | None,
                nvml_index: int | None) -> tuple[dict, dict]:
    """`repeats` event-timed calls of one part (host wall time beside them) with the cache emptied and the
    allocator's peak reset before, NVML's device view after: (timing stats, memory peaks) as dicts."""
    memory.cuda_peak_begin(device)
    start = torch.cuda.memory_allocated(device)
    events, walls = timing.time_cuda_both(fn, cond.timing.repeats)[:2]   # the last output not kept
    mem = memory.cuda_peak_end(device, start)
    snap = memory.nvml_snapshot(uuid, nvml_index)
    mem["nvml_used_mib"] = snap.get("used_mib")
    stats = timing.summarize(events)
    wall = timing.summarize(walls)
    return ({**stats.to_dict(w, h), "host_wall_median_s": wall.median_s, "host_wall_values_s": list(wall.values_s),
             "event_wall_gap": timing.event_wall_gap(stats.median_s, wall.median_s),
             "sm_clock_mhz": snap.get("sm_clock_mhz")}, mem)


def _measure_cuda(codec, images: list[TestImage], cond: TestConditions, device, uuid: str | None,
                  nvml_index: int | None) -> dict:
    """GPU time and memory per image, on the codec built for the CUDA device (already checked).

    Per image (`_cuda_image`): one untimed encode and decode (first warm-up), the remaining warm-ups,
    then `repeats` event-timed calls per part (host wall time beside them) with the cache emptied and the
    allocator's peak reset before each part, and NVML's device view after each part.
    Returns {"timing": [per image {part: stats}], "memory": [per image {part: peaks}]}.
    """
    gc.collect()
    torch.cuda.synchronize(device)
    model_mib = torch.cuda.memory_allocated(device) / memory.MIB
    per_timing, per_memory = [], []
    with torch.no_grad():
        for img in images:
            t, m = _cuda_image(codec, img, cond, device, model_mib, uuid, nvml_index)
            per_timing.append(t)
            per_memory.append(m)
    return {"timing": per_timing, "memory": per_memory}


def _min_gpu_memory(codec, images: list[TestImage], device) -> tuple[dict, dict[str, tuple[str, str]]]:
    """Bisection on the allocator cap for encode and decode of the largest image: the JPEG AI figure
    (memory.min_cuda_memory, MIN_MEMORY_DEFINITION). Runs after every picture's GPU tensors are gone.

    Returns ({part: entry}, not-measured entries): a part whose search cannot finish (the call does not
    fit, leaves memory allocated, or raises something other than an allocation failure) is *not
    measured*, with the reason; the rate point is not failed for it."""
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    k = max(range(len(images)), key=lambda i: images[i].width * images[i].height)
    img = images[k]
    out: dict = {}
    why: list[str] = []
    with torch.no_grad():
        x = img.tensor(device)
        try:
            bits = _check_bitstream(_call("encode", codec.encode, x))
        except Exception as exc:
            return {}, {"min_gpu_memory": ("failed", f"encode of {img.name} failed: {exc}")}
        for step in ("encode", "decode"):
            if step == "decode":
                del x   # the decode's budget does not hold the input picture
                x = None

                def fn():
                    return _call("decode", codec.decode, bits)
            else:
                def fn():
                    return _call("encode", codec.encode, x)
            try:
                out[step] = {"image": img.name, **memory.min_cuda_memory(fn, device)}
            except memory.BisectionFailed as exc:
                why.append(f"{step}: {exc}")
            except Exception as exc:
                why.append(f"{step}: the call raised {type(exc).__name__}: {str(exc)[:300]}")
    missing = {"min_gpu_memory": ("failed", "; ".join(why))} if why else {}
    return out, missing


def _lift_data_limit() -> bool:
    """Raise RLIMIT_DATA's soft limit to its hard limit before the GPU phase (the runner sets only the
    soft limit, so the CPU phase runs under it; CUDA's driver mappings are not documented as staying out
    of it). True when a limit was lifted."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if soft == hard:
            return False
        resource.setrlimit(resource.RLIMIT_DATA, (hard, hard))
        return True
    except (ImportError, OSError, ValueError):
        return False


def _gpu_phase(codec, build, rate, images: list[TestImage], cond: TestConditions,
               devices: list[str], seed: int = 0, submitted: dict | None = None
               ) -> tuple[dict, dict[str, tuple[str, str]]]:
    """Everything measured on the GPU, after the CPU figures: its own phase.

    In order: the GPU settings of profile.toml applied (and recorded), NVML's used memory of every device
    read before this process has a CUDA context, the codec built for CUDA and checked against the CPU
    instance (`cuda_instance_problem`), the cpu→cuda interoperability decode (with that instance, under
    those settings), the timed runs, then the minimum-memory bisection. Any failure on the way (a build
    that fails on CUDA, a device-side assert, a codec that ignores the device) is recorded as
    not_measured["gpu"] with the reason; what was measured before it is kept, and the CPU figures are
    never touched. Returns (values for the rate point, not-measured entries).

    With `submitted` (verify: `_submitted_items`), the CUDA instance decodes the delivery's bitstreams
    instead (`_cuda_verify`: each against the CPU's picture, timed, its peaks) and those comparisons are
    the interoperability entries; the suite's own pictures are not encoded and no minimum is searched.
    """
    out: dict[str, Any] = {}
    missing: dict[str, tuple[str, str]] = {}
    stage = "GPU settings"
    nvml: dict[str, Any] = {}
    try:
        out["gpu_settings"] = timing.gpu_settings(cond.timing.cudnn_benchmark, cond.timing.allow_tf32)
        before = memory.nvml_all_used_mib()           # NVML only: no CUDA context yet
        stage = "CUDA start-up"
        if not torch.cuda.is_available():
            missing["gpu"] = ("no-device", "a CUDA device is listed but the CUDA runtime cannot use it")
            return out, missing
        device = torch.device("cuda", torch.cuda.current_device())
        try:
            uuid = str(torch.cuda.get_device_properties(device).uuid)
        except Exception:
            uuid = None
        index = memory.nvml_index(device.index, os.environ.get("CUDA_VISIBLE_DEVICES"))
        first = memory.nvml_snapshot(uuid, index)
        nvml["device_uuid"] = uuid
        nvml["nvml_mapped_by"] = first.get("mapped_by")
        nvml["nvml_note"] = first.get("error", "")
        key = next((k for k in (before or {}) if uuid and k.endswith(uuid)), None)
        nvml["nvml_used_before_context_mib"] = (before or {}).get(key) if key else None
        nvml["nvml_used_after_mib"] = {"context": first.get("used_mib")}
        stage = "build on cuda"
        # The generators as they were for the CPU build, so a codec initialised at random on the CPU and
        # then moved holds the same weights (the CUDA generator is another one: init on CUDA differs).
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        codec_cuda = _call("build", build, rate, device)
        problem = cuda_instance_problem(codec, codec_cuda)
        if problem:
            missing["gpu"] = ("failed", problem)
            missing["interop"] = ("failed", "cpu→cuda not measured: " + problem)
            return out, missing
        torch.cuda.synchronize(device)
        nvml["nvml_used_after_mib"]["build"] = memory.nvml_snapshot(uuid, index).get("used_mib")
        if submitted is not None:
            stage = "GPU decode of the submitted bitstreams"
            out["verify"], entries = _cuda_verify(codec, codec_cuda, submitted, cond, device, uuid, index)
            out["interop"] = {"pair": "cpu→cuda", "proxy": False, "images": entries,
                              "note": "the submitted bitstreams, decoded on the CPU and on the GPU",
                              "a_runs": "a CPU decode of each submitted bitstream, untimed"}
            nvml["nvml_used_after_mib"]["verify"] = memory.nvml_snapshot(uuid, index).get("used_mib")
            return out, missing
        stage = "cpu→cuda interoperability decode"
        out["interop"] = measure_interop(codec, build, rate, images, devices, None, codec_b=codec_cuda,
                                         cuda_present=True)
        nvml["nvml_used_after_mib"]["interop"] = memory.nvml_snapshot(uuid, index).get("used_mib")
        stage = "GPU timing"
        cuda = _measure_cuda(codec_cuda, images, cond, device, uuid, index)
        out["timing"], out["memory"] = cuda["timing"], cuda["memory"]
        last = memory.nvml_snapshot(uuid, index)
        nvml["nvml_used_after_mib"]["timing"] = last.get("used_mib")
        nvml["nvml_other_processes"] = last.get("other_processes")
        if last.get("other_processes"):
            nvml["nvml_note"] = (f"other processes on the device (pids {last['other_processes']}, host namespace): "
                                 "NVML's used memory includes theirs, and they may share the GPU's time")
        if cond.timing.min_gpu_memory:
            stage = "minimum GPU memory"
            out["min"], nm = _min_gpu_memory(codec_cuda, images, device)
            missing.update(nm)
    except SubmissionError as exc:   # the submission's code raised, or returned a broken picture, on the GPU
        missing["gpu"] = ("failed", f"{stage}: {str(exc)[:500]} (the submission's code, on the GPU)")
        if stage in ("build on cuda", "cpu→cuda interoperability decode"):
            missing.setdefault("interop", ("failed", f"cpu→cuda not measured: {stage} failed: {str(exc)[:300]}"))
    except Exception as exc:
        missing["gpu"] = ("failed", f"{stage}: {type(exc).__name__}: {str(exc)[:500]}")
        if stage in ("CUDA start-up", "build on cuda", "cpu→cuda interoperability decode",
                     "GPU decode of the submitted bitstreams"):
            missing.setdefault("interop", ("failed", f"cpu→cuda not measured: {stage} failed: "
                                           f"{type(exc).__name__}: {str(exc)[:300]}"))
    finally:
        out["nvml"] = nvml
    return out, missing


# What the suite's own steps import on first use: the first dispatch-mode count (torch._dynamo, sympy,
# mpmath: ~1.5 s, ~170 MiB of RSS on torch 2.14), the quality metrics' packages (piq, pyiqa's metric
# module, vmaf-torch, psnr-hvsm, scipy, torchvision, pytorch-msssim) and the cross-check's counters.
SUITE_MODULES = ("torch._dynamo", "pytorch_msssim", "fvcore.nn", "ptflops", "ptflops.pytorch_engine",
                 "ptflops.aten_engine")


def suite_imports() -> None:
    """Import what the suite's own steps import on first use (`SUITE_MODULES`, the available metrics'),
    running no tensor operation: the zygote does it once before it forks any worker (profiler/zygote.py),
    a fresh worker in `_warm_suite`. A package that is not installed is left to the step that needs it
    (it reports why)."""
    import importlib

    for name in SUITE_MODULES:
        try:
            importlib.import_module(name)
        except Exception:   # noqa: BLE001 — its step says what is missing
            pass
    for m in metrics.METRICS:
        metrics.unavailable(m.key)


def _warm_suite() -> None:
    """Pay the suite's own one-time costs before the worker's memory baseline is taken.

    Its imports (`suite_imports`) and the first dispatch-mode count are the suite's, not the codec's:
    their memory must not show up as memory the codec needs, in the first picture's calls or (the
    metrics' packages, imported after that picture's counted decode) in every later one.
    """
    suite_imports()
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


def _delivery_item(delivery: dict, img: TestImage, target_bpp: float) -> tuple[dict, bytes | None]:
    """The verification item of one original at this rate, and the submitted bitstream (None when it is
    missing or unreadable: the item says so, naming the file)."""
    folder = Path(delivery["bitstreams"])
    path = folder / f"{img.name}.bin"
    item = {"original": img.name, "target_bpp": target_bpp, "bitstream": str(path), "problems": []}
    if not path.is_file():
        item["problems"].append(f"{path}: missing bitstream")
        return item, None
    try:
        bits = path.read_bytes()
    except OSError as exc:
        item["problems"].append(f"{path}: cannot be read ({exc})")
        return item, None
    item.update(bitstream_present=True, bytes=len(bits), bpp=8.0 * len(bits) / (img.width * img.height))
    if not bits:
        item["problems"].append(f"{path}: empty bitstream")
        return item, None
    return item, bits


def _verify_item(item: dict, picture: dict, extra: dict, delivery: dict, img: TestImage) -> dict:
    """The item completed from the measured picture: decoder's picture against the submitted one and the
    original, the re-encoded bitstream against the submitted one."""
    from .delivery import difference, read_decoded

    own = extra["own_bits"]
    item.update(decoded_ok=True, psnr_rgb=picture["psnr_rgb"], reencoded_bytes=len(own),
                encoder_identical=_sha256(own) == picture["bitstream_sha256"])
    dec_folder = delivery.get("decoded")
    if dec_folder is None:
        item["problems"].append(f"{delivery['bitstreams']}: no decoded-picture folder for this rate")
        return item
    path = Path(dec_folder) / f"{img.name}.png"
    item["decoded"] = str(path)
    if not path.is_file():
        item["problems"].append(f"{path}: missing decoded picture")
        return item
    try:
        submitted = read_decoded(path, img.width, img.height)
    except (ValueError, OSError) as exc:
        item["problems"].append(str(exc))
        return item
    ours = extra["decoded_u8"][0].permute(1, 2, 0).numpy()
    diff, psnr = difference(ours, submitted)
    item.update(decoded_bit_exact=diff == 0, decoded_max_abs_diff=diff, decoded_psnr_db=psnr)
    return item


def _write_delivery(root: Path, target_bpp: float, img: TestImage, extra: dict) -> None:
    """`profile --write-bitstreams`: ROOT/<target>/<stem>.bin and the 8-bit RGB decoded <stem>.png."""
    from PIL import Image

    from .delivery import rate_folder_name

    folder = root / rate_folder_name(target_bpp)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{img.name}.bin").write_bytes(extra["own_bits"])
    arr = np.ascontiguousarray(extra["decoded_u8"][0].permute(1, 2, 0).numpy())
    Image.fromarray(arr, "RGB").save(folder / f"{img.name}.png")


def _restored(delivery: dict, phase: str) -> dict[str, dict]:
    """The items an earlier worker of this rate point finished (runner.run_delivery_rate), by name."""
    path = delivery.get("partial")
    out: dict[str, dict] = {}
    if not path or not Path(path).is_file():
        return out
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue          # a line cut short by the death of the worker writing it
        if isinstance(rec, dict) and rec.get("phase") == phase and isinstance(rec.get("name"), str):
            out[rec["name"]] = rec
    return out


def _keep(delivery: dict, rec: dict) -> None:
    """One finished item appended to the file that outlives this worker (one line, written at once)."""
    path = delivery.get("partial")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")


def _delivery_record(codec, img: TestImage, cond: TestConditions, baseline_mib: float | None, proxy: bool,
                     delivery: dict, target_bpp: float) -> dict:
    """One item of the delivery measured on the CPU: {"phase", "name", "item", "picture", "interop"}.

    An item on which an earlier worker died (`delivery.failed.cpu`, from the runner) is not run again:
    it fails with that worker's end as its one line, naming the bitstream file."""
    item, submitted = _delivery_item(delivery, img, target_bpp)
    rec: dict = {"phase": "cpu", "name": img.name, "item": item, "picture": None, "interop": None}
    failed = ((delivery.get("failed") or {}).get("cpu") or {}).get(img.name)
    if failed is not None:
        item["problems"].append(f"{item['bitstream']}: {failed['kind']}: {failed['reason']}")
        item["failure"] = failed["kind"]
        return rec
    if submitted is None:
        return rec
    try:
        picture, entry, extra = _measure_image(codec, img, cond, baseline_mib, interop_proxy=proxy,
                                               submitted=submitted)
    except SubmissionError as exc:
        item["problems"].append(f"{item['bitstream']}: {exc}".splitlines()[0])
        return rec
    rec.update(item=_verify_item(item, picture, extra, delivery, img), picture=picture, interop=entry,
               untimed=extra["untimed"])
    return rec


def _submitted_items(delivery: dict, images: list[TestImage], items: list[dict]) -> dict:
    """What the GPU decodes in a verification: the bitstreams the CPU decoded, read again from their files,
    and the items an earlier worker died on in the GPU phase (`failed`)."""
    by_name = {i["original"]: i for i in items}
    todo = []
    for img in images:
        it = by_name.get(img.name)
        if it is None or not it.get("decoded_ok"):
            continue
        path = Path(it["bitstream"])
        try:
            bits = path.read_bytes()
        except OSError:
            continue
        todo.append({"img": img, "bits": bits, "path": str(path)})
    return {"items": todo, "delivery": delivery,
            "failed": ((delivery.get("failed") or {}).get("cuda") or {})}


def _cuda_verify(codec, codec_cuda, submitted: dict, cond: TestConditions, device, uuid: str | None,
                 nvml_index: int | None) -> tuple[dict[str, dict], list[dict]]:
    """Each submitted bitstream decoded on the GPU: ({name: VerifyGpu dict}, interoperability entries).

    Per item: the CPU picture again (an untimed CPU decode: the CPU figures are the CPU phase's, and no
    earlier picture is held during the GPU's peaks), the GPU decode (the first warm-up) compared with it
    (`interop.compare_image`: largest difference in [0, 1] and in 8-bit code values, PSNR between the two
    8-bit pictures, quality against the original), the remaining warm-ups, then the timed decodes and the
    peaks (`_cuda_timed`). Items finished by an earlier worker are taken from its file; one it died on
    fails with that worker's end."""
    from .delivery import difference

    delivery = submitted["delivery"]
    restored = _restored(delivery, "cuda")
    results: dict[str, dict] = {}
    entries: list[dict] = []
    with torch.no_grad():
        for n, s in enumerate(submitted["items"]):
            img, bits, path = s["img"], s["bits"], s["path"]
            rec = restored.get(img.name)
            if rec is None:
                failed = submitted["failed"].get(img.name)
                if failed is not None:
                    rec = {"phase": "cuda", "name": img.name,
                           "gpu": {"device": str(device), "problem": f"{path}: {failed['kind']}: {failed['reason']}"},
                           "interop": {"name": img.name, "width": img.width, "height": img.height,
                                       "bytes": len(bits), "decode_error_b": failed["reason"]}}
                else:
                    _emit(event="image", name=img.name, n=n, phase="cuda")
                    rec = {"phase": "cuda", "name": img.name,
                           **_cuda_verify_item(codec, codec_cuda, img, bits, path, cond, device, uuid,
                                               nvml_index, difference)}
                _keep(delivery, rec)
            results[img.name] = rec["gpu"]
            entries.append(rec["interop"])
    _emit(event="step", part="done")
    return results, entries


def _cuda_verify_item(codec, codec_cuda, img: TestImage, bits: bytes, path: str, cond: TestConditions, device,
                      uuid: str | None, nvml_index: int | None, difference) -> dict:
    """{"gpu": VerifyGpu dict, "interop": InteropImage dict} of one submitted bitstream (`_cuda_verify`)."""
    x = img.tensor("cpu")
    gpu: dict = {"device": str(device)}
    try:
        x_a = _check_decoded(_call("decode", codec.decode, bits), x)
    except SubmissionError as exc:
        gpu["problem"] = f"{path}: the CPU decode failed before the GPU's: {exc}".splitlines()[0]
        return {"gpu": gpu, "interop": {"name": img.name, "width": img.width, "height": img.height,
                                        "error_a": str(exc).splitlines()[0]}}
    held: dict = {}

    def decode_b(b: bytes) -> torch.Tensor:
        y = codec_cuda.decode(b)
        torch.cuda.synchronize(device)
        held["x_b"] = y
        return y

    entry = compare_image(img, x, bits, x_a, decode_b, device)
    if entry.get("decode_error_b") or "x_b" not in held:
        gpu["problem"] = f"{path}: the GPU decode failed: {entry.get('decode_error_b', 'no picture')}".splitlines()[0]
        return {"gpu": gpu, "interop": entry}
    a8 = to_uint8(x_a.detach().float().cpu())[0].permute(1, 2, 0).numpy()
    b8 = to_uint8(held.pop("x_b").detach().float().cpu())[0].permute(1, 2, 0).numpy()
    diff, psnr = difference(a8, b8)
    del x_a, a8, b8
    gpu.update(decoded_ok=True, bit_exact_vs_cpu=diff == 0, max_abs_diff_vs_cpu=diff,
               max_abs_diff_float=entry.get("max_abs_diff"), psnr_vs_cpu_db=psnr,
               psnr_rgb=(entry.get("b") or {}).get("psnr_rgb"))

    def fn():
        return _call("decode", codec_cuda.decode, bits)

    try:
        for _ in range(max(0, cond.timing.warmup - 1)):
            fn()
        gpu["timing"], gpu["memory"] = _cuda_timed(fn, cond, device, img.width, img.height, uuid, nvml_index)
    except Exception as exc:
        gpu["problem"] = f"{path}: the timed GPU decodes failed: {type(exc).__name__}: {exc}".splitlines()[0]
    return {"gpu": gpu, "interop": entry}


def with_gpu_results(items: list[dict], results: dict[str, dict]) -> list[dict]:
    """The items with their GPU decode (new dicts; the items handed in are not changed)."""
    return [{**i, "gpu": results[i["original"]]} if i["original"] in results else i for i in items]


def with_gpu_not_measured(items: list[dict], gpu_missing: tuple[str, str] | None) -> list[dict]:
    """Each item without a GPU decode says why (never a zero): the rate point's reason (no CUDA device,
    not requested, the GPU phase failed), else that the CPU did not decode it (nothing to compare)."""
    out = []
    for i in items:
        if i.get("gpu") is not None:
            out.append(i)
        elif gpu_missing is not None:
            out.append({**i, "gpu_not_measured": {"code": gpu_missing[0], "reason": gpu_missing[1]}})
        else:
            out.append({**i, "gpu_not_measured": {"code": "failed", "reason": "not decoded on the CPU: "
                                                  "no CPU picture to compare the GPU's with"}})
    return out


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
    spent: list[dict] = []      # the untimed steps' records (per picture, per step)
    try:
        rate = with_weights(rate, sub.manifest)
        if rate.weights is not None:
            got["weights"] = {"file": str(rate.weights.relative_to(sub.directory)),
                              "sha256": _sha256(rate.weights.read_bytes()), "source": "file"}
        images = load_images(cond.images)
        _emit(event="start", images=len(images))
        # Whether a CUDA device is there, decided without cuInit (NVML through torch.cuda.device_count):
        # the CUDA context is created only in the GPU phase, after every CPU figure (its host memory
        # would otherwise be in every CPU peak on GPU machines only).
        cuda_requested = "cuda" in devices
        cuda_seen = cuda_requested and cuda_device_present()
        _warm_suite()
        # Packages an earlier worker's submission imported, which the zygote imported before forking this
        # one (profiler/zygote.py): still the submission's, as in a fresh worker.
        preloaded = {m for m in os.environ.pop(PRELOADED_ENV, "").split(",") if m}
        modules_before = {m for m in sys.modules if m.split(".", 1)[0] not in preloaded}
        _emit(event="phase", phase="building")
        build = load_entry(sub)
        codec = _call("build", build, rate, torch.device("cpu"))
        gc.collect()
        # What is alive now (the suite, torch, the metric packages, the model: ~0.4 M objects) is moved out
        # of the collector's generations: the collection before each memory peak (memory.CpuPeak) then
        # scans only what the calls made, 0.17 s → 10 µs each, 8+ times per rate point. Nothing is freed
        # or allocated by it, so the peaks are the same.
        gc.freeze()
        baseline_mib = memory.rss_mib()   # the worker once the model is loaded: CPU peaks are also given above it
        got["environment"] = {**worker_environment(modules_before, set(sys.modules)),
                              "metrics_unavailable": metrics.unavailable_reasons()}
        worker["model_loaded_rss_mib"] = baseline_mib
        worker["preloaded"] = sorted(preloaded)
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
        no_params = getattr(codec, "params_not_measured", None)
        if no_params:   # a program codec without declared weights: not measured, never "0 parameters"
            got["params"] = None
            got["precision"] = {"declared": dict(sub.precision), "offending": None}
            missing["params"] = ("not-available", no_params)
            missing["precision"] = ("not-available", no_params)
        for part, why in (getattr(codec, "macs_not_counted", None) or {}).items():
            if why:
                missing[f"macs_{part}"] = ("not-available", why)

        # On a CPU-only machine the interoperability pair is a proxy on this CPU: its device-A runs are
        # the counted runs below. A real second device is measured after the CPU figures (interop.py).
        proxy = choose_pair(list(devices), cuda_seen)[1]
        proxy_entries = []
        delivery = job.get("delivery")
        write_dir = job.get("write_bitstreams")
        items = []
        restored = _restored(delivery, "cpu") if delivery is not None else {}
        # The counted calls are recorded for a replay at the resolutions (counting/replay.py) where the
        # codec offers no networks to run on meta.
        record = bool(cond.counting.resolutions) and not isinstance(codec, CountableNetworks) \
            and not getattr(codec, "runs_as_program", False) and delivery is None
        recordings: dict[str, dict] = {}
        pending: list[tuple[TestImage, dict]] = []
        own_bitstreams: dict[str, bytes] = {}    # the counted runs' bitstreams, decoded again by the tasks
        tasks_note = (("not-requested", "not requested: --device cpu") if not cuda_requested else
                      ("no-device", "no CUDA device") if not cuda_seen else
                      ("not-available", "task pipelines are timed on the CPU only"))
        # The timed phase, in a timing slot (profiler/slots.py): per picture the counted run, the warm-ups
        # and the timed calls, then the task pipelines' timed calls. A profile's untimed steps come after
        # it, on the untimed cores; a verification's stay with their item (one item, one record).
        with timing_slot("cpu"):
            for n, img in enumerate(images):
                _emit(event="image", name=img.name, n=n)
                _emit(event="phase", phase="counting", image=img.name, n=n, of=len(images))
                if delivery is not None:
                    rec = restored.get(img.name)
                    if rec is None:   # not finished by an earlier worker of this rate point: measured here
                        rec = _delivery_record(codec, img, cond, baseline_mib, proxy, delivery, rate.target_bpp)
                        _keep(delivery, rec)
                    items.append(rec["item"])
                    if rec["picture"] is not None:
                        pictures.append(rec["picture"])
                    if rec["interop"] is not None:
                        proxy_entries.append(rec["interop"])
                    if rec.get("untimed"):      # its untimed steps, as a profile's pictures give theirs
                        spent.append(rec["untimed"])
                    continue
                picture, _, extra = _measure_image(codec, img, cond, baseline_mib, interop_proxy=proxy,
                                                   record=record, defer_untimed=True)
                if write_dir:
                    _write_delivery(Path(write_dir), rate.target_bpp, img, extra)
                pictures.append(picture)
                pending.append((img, extra["pending"]))
                own_bitstreams[img.name] = extra["own_bits"]
                if extra.get("recording"):
                    recordings[img.name] = extra["recording"]
            _emit(event="step", part="done")
            if delivery is None:
                # Compressed-domain tasks ([[tasks]]): latent pipeline and anchors, timed on the CPU
                # (profiler/tasks.py).
                _emit(event="tasks")
                # Each picture's counted and timed decode of its bitstream: the decode part of the
                # decoded-anchor pipelines, not run again (tasks._composed).
                decodes = {p["name"]: {"count": p["counts"]["decoder"], "timing": {"cpu": p["timing"]["cpu"]["decode"]},
                                       "memory": {"cpu": p["memory"]["cpu"]["decode"]}}
                           for p in pictures if "timing" in p and "memory" in p}
                got["tasks"], nm = measure_tasks(codec, sub, rate, images, cond, baseline_mib, gpu_note=tasks_note,
                                                 share_dir=job.get("share_dir"), bitstreams=own_bitstreams,
                                                 decodes=decodes)
                missing.update(nm)
        if delivery is not None:
            got["verification"] = items

        # The untimed steps of each picture: quality metrics, the interoperability proxy's decode.
        for n, (img, todo) in enumerate(pending):
            _emit(event="phase", phase="quality", image=img.name, n=n, of=len(pending))
            quality, entry, steps = untimed_image(codec, img, cond, todo)
            pictures[n] = {**pictures[n], "quality": quality}
            spent.append(steps)
            if entry is not None:
                proxy_entries.append(entry)
        del pending

        # Counting at the resolutions of profile.toml (worst-case decoder) and the cross-check against
        # other counters: profiler/counting/resolutions.py and crosscheck.py, parts of the same networks
        # taken from an earlier rate point (counting/reuse.py). Not in a verification: its worst
        # case is over the submitted bitstreams.
        if delivery is not None:
            missing["resolutions"] = ("not-requested", "verify: the worst case is over the submitted bitstreams")
        else:
            networks = _networks(codec)
            with _sharing(job.get("share_dir"), networks) as published:
                got["networks"], shared = networks, _shared_parts(pictures, networks, (job.get("earlier") or [])
                                                                   + published)
                _emit(event="resolutions")
                (got["resolutions"], nm), spent_res = untimed("resolutions", lambda: count_resolutions(
                    codec, cond.counting.resolutions, pictures, recordings, shared, on_step=_resolution_step),
                    cond.timing.threads)
                missing.update(nm)
                del recordings
                _emit(event="phase", phase="cross-check")
                (got["crosscheck"], nm), spent_cc = untimed("cross-check", lambda: _crosscheck(codec, shared),
                                                             cond.timing.threads)
                missing.update(nm)
                _publish(job.get("share_dir"), rate, networks, pictures, got)
            spent.append({"resolutions": spent_res, "cross-check": spent_cc})

        # Device interoperability: decode this rate point's bitstreams on another device (or a proxy
        # that changes float arithmetic), for the compliance rule: profiler/interop.py. The cpu→cuda
        # pair is measured in the GPU phase, under the GPU settings.
        if proxy:
            _emit(event="phase", phase="interop")
            got["interop"] = measure_interop(codec, build, rate, images, devices, proxy_entries, cuda_present=False)

        if not cuda_requested:
            missing["gpu"] = ("not-requested", "not requested: --device cpu")
        elif not cuda_seen:
            missing["gpu"] = ("no-device", "no CUDA device")
        elif delivery is not None:
            # verify: the submitted bitstreams decoded on the GPU, each against the CPU's picture.
            _emit(event="cuda")
            _emit(event="phase", phase="GPU")
            worker["rlimit_data_lifted"] = _lift_data_limit()
            with timing_slot("gpu"):
                gpu, nm = _gpu_phase(codec, build, rate, images, cond, list(devices), seed,
                                     submitted=_submitted_items(delivery, images, items))
            missing.update(nm)
            if "gpu_settings" in gpu:
                got["environment"] = {**got["environment"], "gpu_settings": gpu["gpu_settings"]}
            if "interop" in gpu:
                got["interop"] = gpu["interop"]
            items = with_gpu_results(items, gpu.get("verify", {}))
            got["gpu_device"] = gpu["nvml"]
            if cond.timing.min_gpu_memory:
                missing["min_gpu_memory"] = ("not-requested", "verify: the minimum GPU memory is searched by "
                                             "profile, not over the submitted bitstreams")
        else:
            _emit(event="cuda")
            _emit(event="phase", phase="GPU")
            worker["rlimit_data_lifted"] = _lift_data_limit()
            with timing_slot("gpu"):
                gpu, nm = _gpu_phase(codec, build, rate, images, cond, list(devices), seed)
            missing.update(nm)
            if "gpu_settings" in gpu:
                got["environment"] = {**got["environment"], "gpu_settings": gpu["gpu_settings"]}
            if "interop" in gpu:
                got["interop"] = gpu["interop"]
            elif "interop" not in missing and not proxy:
                # The runtime could not use the device after all: the proxy, with device A run here.
                got["interop"], rec = untimed("interop proxy", lambda: measure_interop(
                    codec, build, rate, images, devices, None, cuda_present=False), cond.timing.threads)
                spent.append({"interop proxy": rec})
            if "timing" in gpu:
                pictures = [{**p, "timing": {**p["timing"], "cuda": t}, "memory": {**p["memory"], "cuda": m}}
                            for p, t, m in zip(pictures, gpu["timing"], gpu["memory"])]
            if gpu.get("min"):
                got["min_gpu_memory"] = gpu["min"]
            if "timing" in gpu:   # the device's NVML view, beside the GPU figures it belongs to
                got["gpu_device"] = gpu["nvml"]
        if delivery is not None:
            items = with_gpu_not_measured(items, missing.get("gpu"))
            got["verification"] = items
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
    gc.unfreeze()   # a caller running the job in its own process gets its collector back as it was
    got["untimed"] = _untimed_summary(spent)
    try:
        return assemble(got, pictures, missing, worker)
    except Exception as exc:
        # The suite's own figures do not fit its report model: a failed rate point that says so, with
        # the traceback, rather than a worker that dies with a bare exit status.
        error = _classify(exc, traceback.format_exc(), sub.directory, cond.worker.memory_limit_mib)
        return assemble({"index": rate.index, "target_bpp": rate.target_bpp, "status": "failed", "error": error},
                        [], {}, worker)


def _resolution_step(width: int, height: int, how: str, estimate_s: float | None) -> None:
    """Progress of the resolutions phase: which size, counted how, and roughly how long it will take."""
    _emit(event="phase", phase="resolutions", detail=f"{width}×{height}: {how}",
          **({"estimate_s": round(estimate_s, 1)} if estimate_s is not None else {}))


def _networks(codec) -> dict[str, str]:
    """This rate point's network fingerprint per part (counting/reuse.py)."""
    return {part: network_fingerprint(getattr(codec, part), codec) for part in ("encoder", "decoder")}


def _shared_parts(pictures: list[dict], networks: dict[str, str], earlier: list[dict]) -> dict[str, dict]:
    """{part: the earlier rate point whose resolution counts and cross-check it takes}: counting/reuse.py.
    Only parts whose networks are the same and whose real counts on every test picture are identical
    are taken."""
    shared = {}
    for part, fp in networks.items():
        src = find_shared(earlier, part, fp, picture_signatures(pictures, part))
        if src is not None:
            shared[part] = src
    return shared


@contextlib.contextmanager
def _sharing(share_dir: str | None, networks: dict[str, str]):
    """Rate points running at once (`--jobs`) with the same networks: one counts the resolutions and
    the cross-check while the other waits (untimed, on the untimed cores: it holds no timing slot), then
    takes what the first published. Yields the entries the finished ones published in `share_dir` (the
    runner's folder for this profile), in the form of `earlier_entries`; none without one."""
    if not share_dir:
        yield []
        return
    import fcntl

    root = Path(share_dir)
    key = _sha256(json.dumps(networks, sort_keys=True).encode())[:24]
    with open(root / f"{key}.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:     # another rate point is counting these networks: its counts are taken
            _emit(event="phase", phase="resolutions", detail="waiting for a rate point running the same networks")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            published = []
            for path in sorted(root.glob("rate-*.json")):
                try:
                    entry = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                if isinstance(entry, dict) and isinstance(entry.get("networks"), dict):
                    published.append(entry)
            yield published
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _publish(share_dir: str | None, rate, networks: dict[str, str], pictures: list[dict], got: dict) -> None:
    """This rate point's resolution counts and cross-check for the others of the profile (`_sharing`)."""
    if not share_dir:
        return
    entry = {"index": rate.index, "target_bpp": rate.target_bpp, "networks": networks,
             "signatures": {part: picture_signatures(pictures, part) for part in ("encoder", "decoder")},
             "resolutions": got.get("resolutions") or [], "crosscheck": got.get("crosscheck")}
    path = Path(share_dir) / f"rate-{rate.index}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry, default=_plain))
    tmp.replace(path)


def _plain(value):
    """JSON for what the counting steps return beside plain dicts (dataclasses, pydantic models)."""
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _crosscheck(codec, shared: dict[str, dict]) -> tuple[dict | None, dict]:
    """The cross-check, parts shared with an earlier rate point taken from it (counting/reuse.py)."""
    taken = {part: got for part, src in shared.items() if (got := shared_crosscheck(src, part))}
    todo = tuple(p for p in ("encoder", "decoder") if p not in taken)
    if not todo:
        src = next(iter(shared.values()))["crosscheck"]
        return {**{k: v for k, v in src.items() if k not in ("encoder", "decoder")}, **taken}, {}
    out, missing = crosscheck_codec(codec) if len(todo) == 2 else crosscheck_codec(codec, todo)
    if out is None:
        return out, missing
    return {**out, **taken}, missing


def _untimed_summary(spent: list[dict]) -> dict[str, dict]:
    """{step: one record} from the per-picture and per-step records (profiler/untimed.py)."""
    steps: dict[str, list[dict]] = {}
    for records in spent:
        for step, rec in records.items():
            steps.setdefault(step, []).append(rec)
    return {step: add_records(*recs) for step, recs in steps.items()}


def assemble(got: dict, pictures: list[dict], missing: dict[str, tuple[str, str]], worker: dict) -> RateResult:
    """The RateResult from the steps' values (validated against the report model here, in the worker)."""
    typed = [Picture.model_validate(p) for p in pictures]
    timing_out, memory_out = _rate_summaries(typed)
    minimum = got.pop("min_gpu_memory", None)
    if minimum is not None:
        memory_out.setdefault("cuda", {})["min"] = minimum
    device = got.pop("gpu_device", None)
    if device is not None:
        memory_out.setdefault("cuda", {}).update(device)
    return RateResult.model_validate({**got, "images": typed, "not_measured": _not_measured(missing),
                                      "worker": worker, "timing": timing_out, "memory": memory_out})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    global _PROGRESS, _SLOT_REPLIES
    _PROGRESS = _progress_channel()
    _SLOT_REPLIES = _slot_channel()
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
