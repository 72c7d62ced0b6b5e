"""Every figure computed from measurements, in one place.

The report holds what was measured; this module says what it adds up to: per-rate figures (mean bpp,
kMAC/px per part and convention, median times, memory peaks, count completeness), the summary (largest
model, total parameters, worst-case decoder *with the breakdown of the call it came from*, encoder
maximum), how much of a worst case is padding, which planned rate points were not measured, and rate
equality. Renderers, compliance and aggregation read these; none recomputes them, none changes the report.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from .counting.conventions import figure, kmac_per_pixel
from .counting.engine import ScopeCost as CountScope
from .model.report import (NotMeasured, NotMeasuredCode, PartCount, Picture, RateResult, Report, Resolution,
                           ScopeCost, Summary, WorstCase)
from .params import ModelParams, total_over_rates

RATE_TOLERANCE = 1e-9


def same_rate(a: float, b: float) -> bool:
    """Two target rates are the same rate point (0.25, 0.250 and .25 are one rate)."""
    return abs(float(a) - float(b)) < RATE_TOLERANCE


# -- counts -------------------------------------------------------------------------------------------

def _scope(c: ScopeCost) -> CountScope:
    return CountScope(c.macs, c.vm_macs, c.bias, dict(c.elements))


def part_macs(count: PartCount, convention: str = "strict") -> int:
    """MACs of one counted call in a convention (strict: what executed; vm: the reference software's)."""
    if convention == "strict":
        return count.macs
    total = CountScope()
    for c in count.per_module.values():
        total.add(_scope(c))
    return figure(total, convention)


def picture_kmac(pic: Picture, part: str, convention: str = "strict") -> float:
    return kmac_per_pixel(part_macs(pic.counts[part], convention), pic.width, pic.height)


def resolution_kmac(res: Resolution, part: str, convention: str = "strict") -> float | None:
    count = getattr(res, part)
    return None if count is None else kmac_per_pixel(part_macs(count, convention), res.width, res.height)


def count_scopes(per_module: dict[str, ScopeCost]) -> dict[str, CountScope]:
    """The counter's own scope costs, for its attribution helpers (counting/engine.py hierarchical)."""
    return {k: _scope(v) for k, v in per_module.items()}


# -- per rate point -----------------------------------------------------------------------------------

def _median(values: list[float]) -> float:
    return statistics.median(values)


@dataclass(frozen=True)
class RateFigures:
    """The standard table's figures of one rate point (None: not measured)."""

    bpp: float | None
    psnr_rgb: float | None
    kmac_px: dict[str, float | None]          # "encoder"/"decoder", strict, max over pictures
    kmac_px_vm: dict[str, float | None]
    median_s: dict[tuple[str, str], float | None]   # (device, part) → median over pictures of their medians
    count_complete: bool | None


def median_time(r: RateResult, device: str, part: str) -> float | None:
    """Median over pictures of each picture's median time; None unless every picture was timed."""
    vals = [p.timing[device][part].median_s for p in r.images if part in p.timing.get(device, {})]
    if not vals or len(vals) != len(r.images):
        return None
    return _median(vals)


def median_process_time(r: RateResult, part: str) -> float | None:
    """A program codec's whole-process time (median over pictures of each picture's median); None unless
    every picture has one. Its own figure: never mixed with or ranked against `median_time`."""
    vals = [p.process[part].timing.median_s for p in r.images if part in p.process]
    if not vals or len(vals) != len(r.images):
        return None
    return _median(vals)


def peak_memory(r: RateResult, device: str, part: str, key: str) -> float | None:
    """The largest peak over the rate point's pictures (a model's memory need is its worst picture's)."""
    vals = [getattr(p.memory[device][part], key) for p in r.images if part in p.memory.get(device, {})]
    vals = [v for v in vals if v is not None]
    return max(vals) if vals else None


def count_complete(r: RateResult) -> bool | None:
    """Every executed op had a formula, in every counted encode and decode (None: nothing counted)."""
    if not r.images:
        return None
    return all(p.counts[part].complete for p in r.images for part in ("encoder", "decoder"))


def rate_figures(r: RateResult) -> RateFigures:
    imgs = r.images
    psnr = [p.psnr_rgb for p in imgs if p.psnr_rgb is not None]
    return RateFigures(
        bpp=sum(p.bpp for p in imgs) / len(imgs) if imgs else None,
        psnr_rgb=sum(psnr) / len(psnr) if psnr else None,
        kmac_px={part: max((picture_kmac(p, part) for p in imgs), default=None) for part in ("encoder", "decoder")},
        kmac_px_vm={part: max((picture_kmac(p, part, "vm") for p in imgs), default=None)
                    for part in ("encoder", "decoder")},
        median_s={(d, s): median_time(r, d, s) for d in ("cpu", "cuda") for s in ("encode", "decode")},
        count_complete=count_complete(r),
    )


def rate_timing_inputs(images: list[Picture], device: str, part: str) -> list[tuple[dict, int, int]] | None:
    """Per-picture timing of one part (stats dict, W, H) when every picture has it; for timing.rate_point_stats."""
    rows = [(p.timing[device][part].model_dump(), p.width, p.height) for p in images
            if part in p.timing.get(device, {})]
    return rows if rows and len(rows) == len(images) else None


def rate_memory_peaks(images: list[Picture], device: str, part: str) -> dict[str, float] | None:
    """Each numeric peak's maximum over the pictures (the per-rate memory figure)."""
    peaks = [p.memory[device][part] for p in images if part in p.memory.get(device, {})]
    if not peaks:
        return None
    out = {}
    for key, value in peaks[0].model_dump().items():
        if isinstance(value, bool) or key == "per_call":
            continue
        vals = [getattr(p, key) for p in peaks if getattr(p, key) is not None]
        if vals:
            out[key] = max(vals)
    return out


# -- worst cases and the summary ----------------------------------------------------------------------

@dataclass(frozen=True)
class WorstDecoder:
    """The worst-case decoder and the per-module breakdown of the very call it was found in."""

    where: WorstCase
    per_module: dict[str, ScopeCost] = field(default_factory=dict)


def padding(count: PartCount, width: int, height: int) -> dict:
    """The coded size of a counted call and the share of its cost spent on padding, assuming the cost of
    the networks grows with the coded area (convolutional codecs): 1 − W·H / (coded W·H). The 451×300
    built-in picture coded at 512×320 spends 17.4 % of its MACs on padding (its kMAC/px is 21 % above the
    unpadded picture's). None where no 3-channel picture-shaped tensor was produced."""
    if not count.largest_rgb_hw:
        return {}
    ch, cw = count.largest_rgb_hw
    share = max(0.0, 1.0 - (width * height) / (cw * ch)) if cw * ch else None
    return {"coded_width": cw, "coded_height": ch, "padding_share": share}


def _candidates(report: Report, part: str):
    """(kMAC/px, WorstCase, per_module) of every counted call of `part` over the rate points that completed."""
    for r in report.ok_rates():
        for p in r.images:
            c = p.counts[part]
            yield (picture_kmac(p, part), WorstCase(kmac_px=picture_kmac(p, part), macs=c.macs, target_bpp=r.target_bpp,
                                                    image=p.name, width=p.width, height=p.height,
                                                    source=f"{'encode' if part == 'encoder' else 'decode'}()",
                                                    complete=c.complete, **padding(c, p.width, p.height)),
                   c.per_module)
        for res in r.resolutions:
            c = getattr(res, part)
            if c is None:
                continue
            k = resolution_kmac(res, part)
            yield (k, WorstCase(kmac_px=k, macs=c.macs, target_bpp=r.target_bpp, image=None, width=res.width,
                                height=res.height, source=res.method, complete=c.complete,
                                **padding(c, res.width, res.height)), c.per_module)


def worst(report: Report, part: str, resolutions: bool = True) -> WorstDecoder | None:
    best = None
    for k, where, pm in _candidates(report, part):
        if not resolutions and where.image is None:
            continue
        if best is None or k > best[0]:
            best = (k, WorstDecoder(where, dict(pm)))
    return best[1] if best else None


def worst_decoder(report: Report) -> WorstDecoder | None:
    """Max over rate points × test pictures × counted resolutions, with that call's breakdown."""
    return worst(report, "decoder")


def encoder_max(report: Report) -> WorstDecoder | None:
    """The encoder's largest kMAC/px over the real encodes of the test pictures (the submitted bitstreams)."""
    return worst(report, "encoder", resolutions=False)


def planned_rates(report: Report) -> list[float]:
    return list(report.run.planned_rates) or [r.target_bpp for r in report.rates]


def missing_rates(report: Report) -> list[float]:
    """Planned rate points the report has no result for (the run stopped before them)."""
    return [t for t in planned_rates(report) if not any(same_rate(t, r.target_bpp) for r in report.rates)]


def is_complete(report: Report) -> bool:
    """The run finished: state complete and every planned rate point has a result."""
    return report.run.state == "complete" and not missing_rates(report)


# -- the machines the rate points were timed on ----------------------------------------------------------

def torch_build_text(torch: str | None, git: str | None, variant: str | None) -> str | None:
    """`2.14.1+cpu (git 1a2b3c4, CPU)`: a torch build as the notes name it (None when unknown)."""
    if torch is None:
        return None
    extra = ", ".join(x for x in ((f"git {git[:7]}" if git else None), variant) if x)
    return f"{torch} ({extra})" if extra else torch


def timing_machine(report: Report, r: RateResult) -> dict[str, str | None]:
    """What one rate point's timings depend on: `host`, `cpu_model`, `torch_build` (torch_build_text) and
    `threads` (torch threads of its timed calls). From the rate point's own `host` where recorded (its
    worker's machine, a cluster node), else from the report's environment (an older report: one machine)."""
    env = report.environment
    h = r.host
    if h is not None:
        machine = {"host": h.hostname, "cpu_model": h.cpu_model,
                   "torch_build": torch_build_text(h.torch, h.torch_git, h.torch_variant)}
    else:
        tb = env.torch_build
        machine = {"host": None, "cpu_model": env.cpu_model,
                   "torch_build": torch_build_text(env.torch, tb.git if tb else None, tb.variant if tb else None)}
    threads = r.threads or r.environment.torch_threads or env.threads_configured
    return {**machine, "threads": None if threads is None else str(threads)}


MACHINE_KEYS = {"cpu_model": "CPU model", "torch_build": "torch build"}


def mixed_hosts(report: Report) -> list[str]:
    """One sentence per machine property (CPU model, torch build) on which the rate points of this report
    that were timed (status ok, with a recorded host) differ, naming each value's rate points; [] when
    they agree. Timings from different machines are not comparable with each other."""
    timed = [r for r in report.rates if r.ok and r.host is not None]
    out = []
    for key, label in MACHINE_KEYS.items():
        groups: dict[str, list[float]] = {}
        for r in sorted(timed, key=lambda r: r.target_bpp):
            groups.setdefault(str(timing_machine(report, r)[key] or "unknown"), []).append(r.target_bpp)
        if len(groups) > 1:
            out.append(f"rate points timed on different {label}s: " + "; ".join(
                f"{v} ({', '.join(f'{t:g}' for t in ts)} bpp)" for v, ts in groups.items()))
    return out


def summary(report: Report) -> Summary:
    """The summary figures of the standard table, from the rate points that completed."""
    ok = report.ok_rates()
    models = [(r.target_bpp, ModelParams(**r.params.model_dump())) for r in ok if r.params]
    largest = max(models, key=lambda m: m[1].model, default=None)
    dec, enc = worst_decoder(report), encoder_max(report)
    return Summary(
        rate_points=len(report.rates), rate_points_ok=len(ok),
        planned_rates=planned_rates(report), missing_rates=missing_rates(report), complete=is_complete(report),
        params_largest_model=largest[1].model if largest else None,
        params_largest_model_rate=largest[0] if largest else None,
        params_total=total_over_rates([m for _, m in models]) if models else None,
        kmac_px_decoder_worst=dec.where.kmac_px if dec else None,
        kmac_px_decoder_worst_at=dec.where if dec else None,
        kmac_px_encoder_max=enc.where.kmac_px if enc else None,
        kmac_px_encoder_max_at=enc.where if enc else None,
    )


def with_summary(report: Report) -> Report:
    """The report with its stored summary refreshed (for readers of the JSON file; the code reads `summary`)."""
    return report.model_copy(update={"summary": summary(report)})


# -- what is missing, and why --------------------------------------------------------------------------

def not_measured(report: Report) -> dict[str, NotMeasured]:
    """Why figures are missing: field → reason, over the report and every rate point (first reason wins)."""
    out = dict(report.not_measured)
    for r in report.rates:
        for k, v in r.not_measured.items():
            out.setdefault(k, v)
    return out


def gpu_absent(r: RateResult) -> NotMeasured | None:
    """Why this rate point has no GPU figures, when the machine or the run excluded the GPU."""
    nm = r.not_measured.get("gpu")
    return nm if nm is not None and nm.code in (NotMeasuredCode.NO_DEVICE, NotMeasuredCode.NOT_REQUESTED) else None


# -- compressed-domain tasks (profiler/tasks.py) -------------------------------------------------------

@dataclass(frozen=True)
class PipelineFigures:
    """One pipeline of one task at one rate point, over the task's pictures."""

    macs: int                    # strict MACs, mean per picture (rounded)
    vm_macs: int
    kmac_px: float               # Σ MACs / Σ output pixels / 1000 (SR: the ×4 output's pixels)
    kmac_px_vm: float
    cpu_s: float | None          # median over pictures of each picture's median
    params: int
    peak_mib: float | None       # largest CPU peak above the loaded model over the timed runs
    complete: bool


@dataclass(frozen=True)
class TaskRow:
    """task × rate point × anchor: the latent pipeline beside that anchor's decoded and original runs."""

    task: str
    kind: str
    target_bpp: float
    anchor: str | None
    pictures: int
    latent: PipelineFigures | None = None
    decoded: PipelineFigures | None = None
    original: PipelineFigures | None = None
    ratio: float | None = None           # latent ÷ decoded anchor, strict MACs
    ratio_vm: float | None = None
    error: str | None = None


def _pipeline_figures(runs: list, pixels: int) -> PipelineFigures:
    times = [p.timing["cpu"].median_s for p in runs if "cpu" in p.timing]
    peaks = [p.memory["cpu"].above_baseline_mib for p in runs
             if "cpu" in p.memory and p.memory["cpu"].above_baseline_mib is not None]
    macs, vm = sum(p.macs for p in runs), sum(p.vm_macs for p in runs)
    return PipelineFigures(macs=round(macs / len(runs)), vm_macs=round(vm / len(runs)),
                           kmac_px=macs / pixels / 1000.0, kmac_px_vm=vm / pixels / 1000.0,
                           cpu_s=_median(times) if len(times) == len(runs) else None,
                           params=max(p.params for p in runs), peak_mib=max(peaks) if peaks else None,
                           complete=all(p.complete for p in runs))


def task_rows(report: Report) -> list[TaskRow]:
    """Every task of every measured rate point, one row per anchor (a failed task: one row, its error)."""
    rows: list[TaskRow] = []
    for r in report.rates:
        for t in r.tasks:
            if t.error is not None or not t.pictures:
                why = t.error.message if t.error is not None else "no picture measured"
                rows.append(TaskRow(t.name, t.kind, r.target_bpp, None, 0, error=why))
                continue
            pixels = sum(p.output_pixels for p in t.pictures)
            latent = _pipeline_figures([p.latent for p in t.pictures], pixels)
            for a in t.anchors:
                runs = [p.anchors[a.name] for p in t.pictures if a.name in p.anchors]
                if len(runs) != len(t.pictures):
                    continue
                dec = _pipeline_figures([x.decoded for x in runs], pixels)
                org = _pipeline_figures([x.original for x in runs], pixels)
                rows.append(TaskRow(t.name, t.kind, r.target_bpp, a.name, len(t.pictures), latent, dec, org,
                                    ratio=latent.kmac_px / dec.kmac_px if dec.kmac_px else None,
                                    ratio_vm=latent.kmac_px_vm / dec.kmac_px_vm if dec.kmac_px_vm else None))
    return rows
