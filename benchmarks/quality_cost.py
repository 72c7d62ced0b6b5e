"""What the JPEG AI metric set costs: each metric's seconds per megapixel, and the quality step's share of a
default profile.

1. Each metric of profiler/metrics.py on a pair of 8-bit pictures (a smooth picture and a noisy copy) of
   W×H, `--runs` times after one untimed run, on every core (as the worker computes them); the median,
   in seconds per megapixel.
2. A default profile of `--submission` (default submissions/refnet; `--rates` to shorten it) in a
   temporary folder, its workers' wall time summed; and the quality step on the same pictures (the
   default test conditions' built-in pictures, against a noisy copy, once per rate point) timed here.
   The share is quality seconds / profile seconds (the profile includes the quality step).

    python benchmarks/quality_cost.py [--width 768 --height 512 --runs 3] [--submission submissions/refnet]
                                      [--rates 0.25] [--skip-profile]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def metric_costs(width: int, height: int, runs: int) -> dict[str, float | None]:
    from profiler import metrics

    a, b = metrics.cost_inputs(width, height)
    mpx = width * height / 1e6
    out = {}
    for m in metrics.METRICS:
        if metrics.unavailable(m.key):
            out[m.key] = None
            continue
        metrics.compute(a, b, keys=(m.key,))                 # untimed: imports, model construction
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            metrics.compute(a, b, keys=(m.key,))
            times.append(time.perf_counter() - t)
        out[m.key] = statistics.median(times) / mpx
    return out


def quality_seconds(n_rates: int) -> tuple[float, int]:
    """The quality step (profiler.quality.image_quality) on the default built-in pictures, once per rate point."""
    import torch

    from profiler.conditions import TestConditions
    from profiler.images import builtin_image
    from profiler.quality import image_quality

    total, pictures = 0.0, 0
    for name in TestConditions().images.builtin:
        img = builtin_image(name)
        x = img.tensor("cpu")
        g = torch.Generator().manual_seed(0)
        y = (x + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1)
        image_quality(x, y)                                   # warm
        t = time.perf_counter()
        image_quality(x, y)
        total += (time.perf_counter() - t) * n_rates
        pictures += 1
    return total, pictures


def profile_seconds(submission: Path, rates: str | None) -> tuple[float, int]:
    from profiler.model.io import read_report

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "profiler", str(submission), "--device", "cpu", "--out", tmp]
        if rates:
            cmd += ["--rates", rates]
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        report = read_report(Path(tmp) / "report.json")
    walls = [r.worker.wall_s for r in report.rates if r.worker.wall_s is not None]
    return sum(walls), len(report.rates)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--submission", type=Path, default=ROOT / "submissions" / "refnet")
    p.add_argument("--rates", type=str, default=None)
    p.add_argument("--skip-profile", action="store_true")
    args = p.parse_args()

    costs = metric_costs(args.width, args.height, args.runs)
    print(f"metric cost on {args.width}×{args.height}, median of {args.runs}, every core:")
    for k, v in costs.items():
        print(f"  {k:12s} {'not measured' if v is None else f'{v:8.3f} s/Mpx'}")
    total = sum(v for v in costs.values() if v is not None)
    print(f"  {'all':12s} {total:8.3f} s/Mpx")
    if args.skip_profile:
        return 0
    prof_s, n_rates = profile_seconds(args.submission, args.rates)
    q_s, pictures = quality_seconds(n_rates)
    print(f"default profile of {args.submission.name}: {n_rates} rate point(s), workers' wall {prof_s:.1f} s; "
          f"quality step on its {pictures} pictures × {n_rates} rate point(s): {q_s:.1f} s "
          f"= {100 * q_s / prof_s:.1f} % of the profile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
