"""Profile a CompressAI model without writing a manifest: `jpegai-profile zoo ARCH [options]` (or `--zoo ARCH`).

The one-liner writes the manifest it stands for — the CompressAI adapter, one rate point per JPEG AI
target rate mapped to the architecture's quality levels (`profiler.adapters.compressai.ARCHITECTURES`),
or one per `--quality` — into `<out>/submission/submission.toml` (default out: `reports/<arch>/`), then
runs the ordinary profile on that directory. The manifest stays beside the report, so the run can be
repeated or edited as a normal submission: `jpegai-profile reports/<arch>/submission`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .errors import InputError

PROPONENT = "CompressAI zoo (jpegai-profile --zoo)"


def _qualities(text: str, arch) -> list[int]:
    try:
        qs = [int(q) for q in text.split(",") if q.strip()]
    except ValueError:
        raise InputError("command line", "--quality", f"expected comma-separated integers, got {text!r}") from None
    bad = [q for q in qs if q not in arch.qualities]
    if not qs or bad:
        raise InputError("command line", "--quality",
                         f"{arch.name} has qualities {arch.qualities[0]}–{arch.qualities[-1]}, got {text!r}")
    return sorted(set(qs))


def rate_points(arch, qualities: list[int] | None) -> list[tuple[float, int]]:
    """(target_bpp, quality) per rate point.

    Without `qualities`: the architecture's mapping, one rate point per JPEG AI target rate. With them:
    one rate point per quality, at the lowest target rate the mapping gives it (the one its rate is
    judged against). A quality the mapping leaves out gets a nominal target between its neighbours'
    (the geometric mean of their lowest targets, e.g. 0.354 between 0.25 and 0.5), which no JPEG AI
    target equals, so it cannot collide with another rate point.
    """
    if qualities is None:
        return sorted(arch.quality_for_target.items())
    lowest: dict[int, float] = {}
    for t, q in sorted(arch.quality_for_target.items()):
        lowest.setdefault(q, t)
    points = []
    for q in qualities:
        if q in lowest:
            points.append((lowest[q], q))
            continue
        below = [lowest[m] for m in lowest if m < q]
        above = [lowest[m] for m in lowest if m > q]
        lo, hi = (max(below) if below else None), (min(above) if above else None)
        nominal = (lo * hi) ** 0.5 if lo and hi else (hi / 2 if hi else lo * 1.5)
        points.append((round(nominal, 3), q))
    return sorted(points)


def manifest_text(arch, points: list[tuple[float, int]], metric: str, weights: str | None) -> str:
    lines = [f"# Written by `jpegai-profile --zoo {arch.name}`: {arch.title}, CompressAI adapter.",
             "[submission]", f'proponent = "{PROPONENT}"', f'codec = "{arch.name}"',
             'version = "compressai-1.2.8"', 'entry = "profiler.adapters.compressai:build"', "",
             "[precision]", 'encoder = "float32"', 'decoder = "float32"']
    for target, q in points:
        lines += ["", "[[rates]]", f"target_bpp = {target:g}"]
        if weights:
            lines.append(f'weights = "{weights}"')
        lines.append(f'options = {{ arch = "{arch.name}", quality = {q}, metric = "{metric}" }}')
    return "\n".join(lines) + "\n"


def write_submission(directory: Path, arch_name: str, qualities: str | None = None, metric: str = "mse",
                     weights: Path | None = None) -> Path:
    """Write the manifest (and a copy of the weights) for a zoo model into `directory`."""
    from .adapters.compressai import ARCHITECTURES

    if arch_name not in ARCHITECTURES:
        raise InputError("command line", "--zoo",
                         f"unknown architecture {arch_name!r} (known: {', '.join(ARCHITECTURES)})")
    arch = ARCHITECTURES[arch_name]
    qs = _qualities(qualities, arch) if qualities is not None else None
    weights_rel = None
    if weights is not None:
        if qs is None or len(qs) != 1:
            raise InputError("command line", "--weights", "give exactly one --quality with --weights "
                                                          "(a weights file holds one quality's model)")
        if not weights.is_file():
            raise InputError(weights, "--weights", "file not found")
        # CompressAI publishes `.pth.tar` checkpoints: plain torch files of tensors. The manifest takes
        # .pt/.pth/.safetensors, so the copy is named by what it holds.
        suffix = ".safetensors" if weights.suffix == ".safetensors" else ".pth"
        weights_rel = f"weights/q{qs[0]}{suffix}"
        target = directory / weights_rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            os.link(weights, target)          # no copy of a large file where a hard link will do
        except OSError:
            shutil.copyfile(weights, target)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "submission.toml").write_text(manifest_text(arch, rate_points(arch, qs), metric, weights_rel))
    return directory
