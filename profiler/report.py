"""The one report object: what a profile measured, and its versioned JSON.

Measurements build a `Report`; renderers only read it. A figure that could not be measured is None
in the data and has a reason in the `not_measured` map of the rate point (or of the report), so no
renderer ever prints 0 or a guess for it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import SCHEMA_VERSION, __version__
from .counting.conventions import kmac_per_pixel
from .counting.engine import CountResult
from .errors import InputError
from .params import ModelParams, total_over_rates


@dataclass
class ImageResult:
    name: str
    width: int
    height: int
    bytes: int
    bpp: float
    psnr_rgb: float | None
    counts: dict[str, dict]               # part ("encoder"/"decoder") → CountResult.to_dict()
    timing: dict[str, dict]               # device → {"encode": TimingStats dict, "decode": ...}
    memory: dict[str, dict]               # device → {"encode": {...}, "decode": {...}}
    quality: dict[str, float] = field(default_factory=dict)   # extra metrics (MS-SSIM, PSNR-Y, …)

    def macs(self, part: str) -> int:
        return int(self.counts[part]["macs"])

    def kmac_px(self, part: str) -> float:
        return kmac_per_pixel(self.macs(part), self.width, self.height)

    def count(self, part: str) -> CountResult:
        return CountResult.from_dict(self.counts[part])


@dataclass
class RateResult:
    index: int
    target_bpp: float
    status: str = "ok"                    # "ok" or "failed"
    error: dict | None = None             # {"stage", "message", "traceback", "stderr_tail", "kind"}
                                          # kind: submission, input, memory, timeout, crash, suite
    params: dict | None = None            # ModelParams as a dict
    weights: dict = field(default_factory=dict)     # {"file", "sha256", "source"}
    precision: dict = field(default_factory=dict)   # {"declared": {...}, "weights_dtypes": {...}}
    threads: int | None = None
    images: list[ImageResult] = field(default_factory=list)
    resolutions: list[dict] = field(default_factory=list)   # counts at profile.toml resolutions
    crosscheck: dict = field(default_factory=dict)          # part → ours vs fvcore/ptflops (counting/crosscheck.py)
    not_measured: dict[str, str] = field(default_factory=dict)
    worker: dict = field(default_factory=dict)              # pid, wall time, peak RSS of the worker
    # Per rate point (= per model): device → step → statistics over the images (profiler/timing.py).
    timing: dict = field(default_factory=dict)
    # device → step → peaks over the images, and the minimum GPU memory (profiler/memory.py).
    memory: dict = field(default_factory=dict)
    # Where this rate point was measured: threads in use, what the submission imported (environment.py).
    environment: dict = field(default_factory=dict)
    interop: dict = field(default_factory=dict)             # device interoperability (profiler/interop.py)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def model_params(self) -> ModelParams | None:
        return ModelParams(**self.params) if self.params else None

    def bpp_mean(self) -> float | None:
        return sum(i.bpp for i in self.images) / len(self.images) if self.images else None

    def kmac_px_max(self, part: str) -> float | None:
        return max((i.kmac_px(part) for i in self.images), default=None)

    def kmac_px_mean(self, part: str) -> float | None:
        return sum(i.kmac_px(part) for i in self.images) / len(self.images) if self.images else None

    def median_time(self, device: str, step: str) -> float | None:
        """Median over images of each image's median time (None when not measured)."""
        vals = [i.timing[device][step]["median_s"] for i in self.images
                if i.timing.get(device) and i.timing[device].get(step)]
        if not vals or len(vals) != len(self.images):
            return None
        vals.sort()
        mid = len(vals) // 2
        return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2

    def peak_memory(self, device: str, step: str, key: str) -> float | None:
        vals = [i.memory[device][step][key] for i in self.images
                if i.memory.get(device) and i.memory[device].get(step) and key in i.memory[device][step]]
        return max(vals) if vals else None

    @classmethod
    def from_dict(cls, d: dict) -> "RateResult":
        d = dict(d)
        d["images"] = [ImageResult(**i) for i in d.get("images", [])]
        return cls(**d)


@dataclass
class Report:
    submission: dict
    conditions: dict
    environment: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    rates: list[RateResult] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    compliance: dict | None = None
    not_measured: dict[str, str] = field(default_factory=dict)
    # How the profile ran (profiler/runner.py): state "running" until the last rate point is written, then
    # "complete"; the seed the workers used; planned and resumed rates; the worker limits.
    run: dict = field(default_factory=dict)
    schema_version: str = SCHEMA_VERSION
    tool: dict = field(default_factory=lambda: {"name": "jpegai-profile", "version": __version__})
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    # -- derived figures -------------------------------------------------------------------------
    def ok_rates(self) -> list[RateResult]:
        return [r for r in self.rates if r.ok]

    def compute_summary(self) -> dict:
        """The summary figures of the standard table, from the rate points that completed."""
        ok = self.ok_rates()
        models = [r.model_params() for r in ok if r.params]
        largest = max(models, key=lambda m: m.model, default=None)
        worst = None
        for r in ok:
            for img in r.images:
                k = img.kmac_px("decoder")
                if worst is None or k > worst["kmac_px"]:
                    worst = {"kmac_px": k, "target_bpp": r.target_bpp, "image": img.name,
                             "width": img.width, "height": img.height, "source": "decode()"}
            for res in r.resolutions:
                k = res.get("kmac_px_decoder")
                if k is not None and (worst is None or k > worst["kmac_px"]):
                    worst = {"kmac_px": k, "target_bpp": r.target_bpp, "image": None,
                             "width": res["width"], "height": res["height"], "source": res.get("method", "meta")}
        enc = None
        for r in ok:
            for img in r.images:
                k = img.kmac_px("encoder")
                if enc is None or k > enc["kmac_px"]:
                    enc = {"kmac_px": k, "target_bpp": r.target_bpp, "image": img.name}
        self.summary = {
            "rate_points": len(self.rates),
            "rate_points_ok": len(ok),
            "params_largest_model": largest.model if largest else None,
            "params_largest_model_rate": next((r.target_bpp for r in ok if r.params and largest
                                               and r.params["model"] == largest.model), None),
            "params_total": total_over_rates(models) if models else None,
            "kmac_px_decoder_worst": worst["kmac_px"] if worst else None,
            "kmac_px_decoder_worst_at": worst,
            "kmac_px_encoder_max": enc["kmac_px"] if enc else None,
            "kmac_px_encoder_max_at": enc,
        }
        return self.summary

    # -- JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=False, default=_json_default)

    @classmethod
    def from_dict(cls, d: dict) -> "Report":
        d = dict(d)
        d["rates"] = [RateResult.from_dict(r) for r in d.get("rates", [])]
        return cls(**d)

    def write(self, path: Path) -> None:
        """Write atomically: a temporary file in the same folder, then a rename."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".report-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(self.to_json())
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; the other files of the report are 0644
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_report(path: Path | str) -> Report:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(path, None, f"not a readable report ({exc})") from None
    version = str(data.get("schema_version", ""))
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise InputError(path, "schema_version", f"report schema {version!r} is not readable by this version "
                                                 f"(expects {SCHEMA_VERSION})")
    return Report.from_dict(data)
