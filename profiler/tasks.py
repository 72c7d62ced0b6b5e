"""Compressed-domain tasks: a latent-domain pipeline beside its decoded-domain anchors (one rate point).

Per `[[tasks]]` entry of the manifest (profiler/taskspec.py), per rate point and per picture (the first
`[tasks] images` test pictures), three pipelines, each counted **as one call** by the dispatch-level
counter (strict and vm MACs, per module), then timed (`[tasks] repeats` runs, the counted run being the
warm-up) with the CPU peak memory over the timed runs (above the worker's RSS once the codec, the task
network and the anchors are loaded):

- *latent*: `codec.decode_latents(bitstream)` + the task network. Its scopes are the codec's decoder
  (`decoder.*`), the task network (`task.*`) and the synthesis transform as its own root (`synthesis.*`,
  from `codec.synthesis`; without it, any scope with a `g_s` component): a synthesis scope in this count
  is recorded (`synthesis_scopes`) and makes the task's latent figures a failure, never a figure;
- *decoded anchor*: `codec.decode(bitstream)` + the anchor network on the decoded picture, **composed of
  measured parts** rather than run again (`_composed`, the report's `composed_of`): the decode is the rate
  point's own decode of that picture's bitstream (the same call, counted and timed by the rate point) or,
  where the task codes another picture (super-resolution), that decode counted and timed here once for
  all the task's anchors; the anchor part is the *original anchor* below, on a picture of the same shape
  (the suite's anchor networks have no data-dependent path: the same ops whatever the pixels). Counts add
  per module, timings add figure by figure, the peak is the larger of the parts';
- *original anchor*: the anchor network on the uncompressed picture.

The bitstream is the codec's own `encode()` of the picture, made here, outside every counted and timed
region. Super-resolution codes the ×4 bicubic-down-scaled picture (anchors.downscale): the pipelines run
on that bitstream, the original anchor on the uncompressed low-resolution picture, and the kMAC/px
denominator (`output_pixels`) is the high-resolution output's pixels (4W × 4H of the low-resolution
picture); for the other kinds it is the original picture's W × H.

Anchors (profiler/anchors.py) and task networks have random weights unless the manifest names some:
task accuracy is never measured, and the report says so.
"""

from __future__ import annotations

import os

import traceback
from typing import Any, Callable

import torch

from . import memory, timing
from .anchors import SR_SCALE, anchors_for, downscale
from .counting import CountResult, OpCounter
from .counting.engine import ScopeCost
from .errors import InputError, SubmissionError
from .taskspec import TaskSpec, load_task_entry, with_task_weights

SYNTHESIS_ROOT = "synthesis"
SYNTHESIS_NAME = "g_s"     # the conventional name of a synthesis transform, used when the codec names none


def _unique_params(*modules: torch.nn.Module, without: torch.nn.Module | None = None) -> int:
    skip = {id(p) for p in without.parameters()} if without is not None else set()
    seen: set[int] = set()
    n = 0
    for m in modules:
        for p in m.parameters():
            if id(p) not in seen and id(p) not in skip:
                seen.add(id(p))
                n += p.numel()
    return n


def _submission_call(stage: str, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except (SubmissionError, InputError):
        raise
    except Exception as exc:
        raise SubmissionError(stage, f"{type(exc).__name__}: {exc}", traceback.format_exc()) from None


def synthesis_scopes(per_module: dict, by_module: bool) -> list[str]:
    """Scopes of a count that belong to the synthesis transform: the `synthesis` root (and below) when the
    codec names its module, otherwise every scope with a `g_s` component."""
    if by_module:
        return sorted(k for k in per_module if k == SYNTHESIS_ROOT or k.startswith(SYNTHESIS_ROOT + "."))
    return sorted(k for k in per_module if SYNTHESIS_NAME in k.split("."))


def _pipeline(fn: Callable[[], Any], roots: dict[str, torch.nn.Module], root_name: str, params: int,
              repeats: int, baseline_mib: float | None,
              check: Callable[[CountResult], None] | None = None) -> tuple[dict, CountResult]:
    """Count fn once (as one call), then time it `repeats` times under a CPU peak: (entry dict, count).
    `check` sees the count first, even when the call raised (its complaint is the one reported)."""
    counter = OpCounter(roots, root_name)
    failure: SubmissionError | None = None
    with counter:
        try:
            fn()
        except SubmissionError as exc:
            failure = exc
    c = counter.result()
    if check is not None:
        check(c)
    if failure is not None:
        raise failure
    with memory.CpuPeak(baseline_mib) as peak:
        times = timing.time_cpu(fn, repeats)[0]
    total = c.total()
    entry = {"macs": c.macs, "vm_macs": total.vm_macs, "complete": c.complete, "count": c.to_dict(),
             "params": params, "timing": {"cpu": timing.summarize(times).to_dict()},
             "memory": {"cpu": peak.result.to_dict()}}
    return entry, c


def _composed(decode: dict, anchor: dict, params: int, decode_from: str) -> dict:
    """A decoded-anchor pipeline from its measured parts: `decode` ({"count", "timing": {"cpu"}, "memory":
    {"cpu"}}: the decode of the bitstream) then `anchor` (the anchor's pipeline on the original picture of
    the same shape). The anchor part's outside-module scope `original` is this pipeline's `decoded`."""
    d = CountResult.from_dict(decode["count"])
    a = CountResult.from_dict(anchor["count"])
    a.per_module = {("decoded" + k[len("original"):] if k == "original" or k.startswith("original.") else k): v
                    for k, v in a.per_module.items()}
    c = d.merged(a)
    total: ScopeCost = c.total()
    peaks = [m.get("above_baseline_mib") for m in (decode["memory"].get("cpu") or {}, anchor["memory"].get("cpu") or {})]
    peak = {"above_baseline_mib": max(peaks)} if None not in peaks else {}
    return {"macs": c.macs, "vm_macs": total.vm_macs, "complete": c.complete, "count": c.to_dict(), "params": params,
            "timing": {"cpu": timing.summed(decode["timing"]["cpu"], anchor["timing"]["cpu"])},
            "memory": {"cpu": peak} if peak else {}, "composed_of": {"decode": decode_from, "anchor": "original"}}


def _shared_original(share_dir: str | None, rate, key: tuple, measure: Callable[[], dict]) -> dict:
    """An anchor's pipeline on the original picture: it does not depend on the codec's rate, so it is
    measured by the first rate point of the profile that needs it and taken by the others from the
    profile's share folder (the runner's; `share_dir`), naming the rate point it was measured on."""
    if not share_dir:
        return measure()
    import hashlib
    import json
    from pathlib import Path

    path = Path(share_dir) / f"task-original-{hashlib.sha256(repr(key).encode()).hexdigest()[:24]}.json"
    try:
        entry = json.loads(path.read_text())
        if isinstance(entry, dict) and isinstance(entry.get("measured_on"), dict):
            return entry
    except (OSError, ValueError):
        pass
    entry = {**measure(), "measured_on": {"index": rate.index, "target_bpp": rate.target_bpp}}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(entry, default=_json_default))
    tmp.replace(path)
    return {**entry, "measured_on": None}


def _json_default(value):
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON")


def measure_task(codec, task: TaskSpec, rate, manifest, images: list, repeats: int,
                 baseline_mib: float | None = None, cuda_note: tuple[str, str] | None = None,
                 share_dir: str | None = None, bitstreams: dict[str, bytes] | None = None,
                 decodes: dict[str, dict] | None = None) -> dict:
    """One task at one rate point: a `TaskRate` dict. The submission's failures (its build_task, its
    decode_latents, its task network) are the task's error; the rate point's own figures are untouched.
    With `share_dir`, the anchors' pipelines on the original picture are shared across the profile's rate
    points (`_shared_original`). `bitstreams` (picture name → the rate point's own bitstream of that picture,
    from its counted run) are decoded instead of encoding the picture again, where the task codes the
    picture itself (not super-resolution's quarter picture): the encode is not part of any pipeline.
    `decodes` (picture name → {"count", "timing": {"cpu"}, "memory": {"cpu"}}: the rate point's counted and
    timed decode of that bitstream) are the decode part of the decoded-anchor pipelines (`_composed`);
    without them, or for another picture, that decode is counted and timed here, once per picture."""
    out: dict[str, Any] = {"name": task.name, "kind": task.kind, "entry": task.entry, "pictures": [],
                           "not_measured": {}}
    if cuda_note is not None:
        out["not_measured"]["gpu"] = {"code": cuda_note[0], "reason": cuda_note[1]}
    out["not_measured"]["accuracy"] = {"code": "not-available", "reason": (
        "task accuracy is not measured: anchors (and task networks without weights) have random weights; "
        "the figures are complexity only")}
    anchors = anchors_for(task.kind)
    synth = getattr(codec, "synthesis", None)
    by_module = isinstance(synth, torch.nn.Module)
    out["synthesis_check"] = ("codec.synthesis counted as its own scope" if by_module else
                              f"no codec.synthesis: scopes named {SYNTHESIS_NAME!r} taken as synthesis")
    try:
        if not callable(getattr(codec, "decode_latents", None)):
            raise SubmissionError("decode_latents", "the codec has no decode_latents(bitstream) "
                                  "(profiler/codec.py LatentDecoder): no latent pipeline")
        task = with_task_weights(task, manifest)
        build_task = load_task_entry(task, manifest)
        net = _submission_call("build_task", build_task, task, rate, torch.device("cpu"))
        if not isinstance(net, torch.nn.Module):
            raise SubmissionError("build_task", f"build_task() must return a torch.nn.Module, got {type(net).__name__}")
        net.eval()
        out["params"] = _unique_params(net)
        try:
            nets = {a.name: a.build().eval() for a in anchors}
        except ModuleNotFoundError as exc:
            raise InputError(None, f"tasks[{task.index}]", f"the {task.kind} anchors need {exc.name} "
                             "(pip install 'jpegai-profile[tasks]')") from None
        out["anchors"] = [{"name": a.name, "description": a.description, "params": _unique_params(nets[a.name])}
                          for a in anchors]
        decoder = codec.decoder
        latent_params = _unique_params(decoder, net, without=synth if by_module else None)
        latent_roots = ({SYNTHESIS_ROOT: synth} if by_module else {}) | {"decoder": decoder, "task": net}
        # Peaks are given above the worker's RSS once the codec, this task network and the anchors are
        # loaded: what the pipelines' calls need on top of every network's weights.
        import gc

        gc.collect()
        baseline_mib = memory.rss_mib()
        with torch.no_grad():
            for img in images:
                x = img.tensor("cpu")
                src = downscale(x, SR_SCALE) if task.kind == "super-resolution" else x
                # Where the task codes the picture itself, the counted run's bitstream is that picture's.
                bits = (bitstreams or {}).get(img.name) if src is x else None
                if bits is None:
                    bits = bytes(_submission_call("encode", codec.encode, src))
                ch, cw = src.shape[-2:]
                pixels = (ch * SR_SCALE) * (cw * SR_SCALE) if task.kind == "super-resolution" else ch * cw

                def latent():
                    rep = _submission_call("decode_latents", codec.decode_latents, bits)
                    return _submission_call("task network", net, rep)

                def no_synthesis(c: CountResult) -> None:
                    scopes = synthesis_scopes(c.per_module, by_module)
                    if scopes:
                        raise SubmissionError("decode_latents", "the synthesis transform ran in the latent pipeline "
                                              f"({', '.join(scopes[:3])}): decode_latents must stop before it")

                lat, c = _pipeline(latent, latent_roots, "latent", latent_params, repeats, baseline_mib, no_synthesis)
                scopes = synthesis_scopes(c.per_module, by_module)
                # The decode part of every decoded-anchor pipeline of this picture: the rate point's own
                # (the same call) where the task codes the picture itself, else counted and timed here once.
                given = (decodes or {}).get(img.name) if src is x else None
                own_decode = None
                if given is not None:
                    decode_part, decode_from = given, "rate point"
                else:
                    def decode():
                        out = _submission_call("decode", codec.decode, bits)
                        if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(src.shape):
                            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                            raise SubmissionError("decode", f"decode() of the task's bitstream returned {got}, "
                                                  f"expected a tensor of shape {tuple(src.shape)}")
                        return out

                    decode_part = _pipeline(decode, {"decoder": decoder}, "decoded", _unique_params(decoder),
                                            repeats, baseline_mib)[0]
                    decode_from, own_decode = "task", decode_part
                runs = {}
                for a in anchors:
                    anet = nets[a.name]

                    def original(anet=anet):
                        return anet(src)

                    org = _shared_original(share_dir, rate, (task.kind, a.name, img.name, tuple(src.shape), repeats),
                                           lambda original=original, anet=anet: _pipeline(
                                               original, {"anchor": anet}, "original", _unique_params(anet),
                                               repeats, baseline_mib)[0])
                    dec = _composed(decode_part, org, _unique_params(decoder, anet), decode_from)
                    runs[a.name] = {"decoded": dec, "original": org}
                out["pictures"].append({"image": img.name, "width": img.width, "height": img.height,
                                        "coded_width": int(cw), "coded_height": int(ch), "output_pixels": int(pixels),
                                        "bytes": len(bits), "latent": lat, "anchors": runs, "decode": own_decode,
                                        "synthesis_scopes": scopes})
    except SubmissionError as exc:
        out["error"] = {"kind": "submission", "stage": exc.stage, "message": str(exc),
                        "traceback": exc.traceback_text}
    except InputError as exc:
        out["error"] = {"kind": "input", "stage": "input", "message": str(exc)}
    except Exception as exc:   # the suite's own (an anchor): this task fails, the rate point's figures stay
        out["error"] = {"kind": "suite", "stage": "tasks", "traceback": traceback.format_exc(),
                        "message": f"internal error of jpegai-profile (please report it): {type(exc).__name__}: {exc}"}
    if out.get("error"):
        out["pictures"] = []   # no partial figures beside an error
    return out


def measure_tasks(codec, sub, rate, images: list, cond, baseline_mib: float | None = None,
                  gpu_note: tuple[str, str] | None = None, share_dir: str | None = None,
                  bitstreams: dict[str, bytes] | None = None, decodes: dict[str, dict] | None = None
                  ) -> tuple[list[dict], dict[str, tuple[str, str]]]:
    """Every task of the submission at this rate point: (TaskRate dicts, the rate point's not-measured
    entries). Nothing when the submission declares no task; "not requested" when [tasks] measure = false."""
    if not sub.tasks:
        return [], {}
    if not cond.tasks.measure:
        return [], {"tasks": ("not-requested", "[tasks] measure = false in the test conditions")}
    pictures = list(images)[: cond.tasks.images]
    return [measure_task(codec, t, rate, sub.manifest, pictures, cond.tasks.repeats, baseline_mib, gpu_note,
                         share_dir, bitstreams, decodes) for t in sub.tasks], {}
