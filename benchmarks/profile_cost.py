"""What a full profile costs beyond the runs it must time.

The floor for one rate point is (warm-up + repeats) × (encode + decode) per image: the timed runs plus
the warm-ups (the counted run is the first warm-up). This script runs the real CLI on a submission in
a subprocess, reads the report it wrote, and prints, side by side from that one run:

- the floor, from the measured median encode/decode times;
- the worker's wall time (model build, images, counted run, warm-ups, timed runs, extra measurements);
- the whole command's wall time (interpreter start, imports, manifest, worker start, rendering);
- the ratios of the last two to the floor.

Usage: python benchmarks/profile_cost.py [SUBMISSION] [--rates 0.5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("submission", nargs="?", default=str(ROOT / "submissions" / "bmshj2018-hyperprior"))
    ap.add_argument("--rates", default="0.5")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "profiler", args.submission, "--rates", args.rates, "--repeats",
               str(args.repeats), "--warmup", str(args.warmup), "--device", "cpu", "--out", out]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        total = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-2000:])
            return 1
        rep = json.loads((Path(out) / "report.json").read_text())

    runs = args.warmup + args.repeats
    floor = worker = 0.0
    for r in rep["rates"]:
        worker += r["worker"]["wall_s"]
        for img in r["images"]:
            t = img["timing"]["cpu"]
            floor += runs * (t["encode"]["median_s"] + t["decode"]["median_s"])
    n_img = sum(len(r["images"]) for r in rep["rates"])
    print(f"submission: {Path(args.submission).name}  rates: {args.rates}  images: {n_img}  "
          f"warm-up {args.warmup} + repeats {args.repeats}")
    print(f"floor (warm-up + repeats) × (enc + dec): {floor:8.2f} s")
    print(f"worker wall time:                         {worker:8.2f} s   ratio {worker / floor:5.2f}")
    print(f"whole command wall time:                  {total:8.2f} s   ratio {total / floor:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
