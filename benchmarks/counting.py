"""Counting the decoder networks of CompressAI cheng2020-anchor at 3840×2160: ours (meta device) against
fvcore and ptflops ('aten' backend, real tensors), one after another, each in its own process.

Prints per counter: wall time of the count, peak RSS of the process, and the peak above the process's own
baseline (after imports and model construction), then the ratios and the three strict totals.

    python benchmarks/counting.py [--width 3840 --height 2160 --quality 3 --threads 2]

Targets (issue #3): ours ≥ 1000× faster and ≥ 50× less peak memory above baseline than fvcore, with
identical strict totals. Needs several GB of free memory for the fvcore and ptflops runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _rss_mib() -> float:
    # current RSS from /proc (ru_maxrss is the peak so far)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(counter: str, width: int, height: int, quality: int, threads: int) -> dict:
    """Runs in a child process: build the codec, note the baseline, count, report."""
    sys.path.insert(0, str(ROOT))
    import torch

    torch.set_num_threads(threads)
    from profiler.adapters.compressai import build
    from profiler.counting.crosscheck import PartForward, _Splat, _ptflops_total
    from profiler.counting.engine import OpCounter
    from profiler.counting.meta import meta_copy
    from torch.utils._pytree import tree_flatten

    class Rate:
        options = {"arch": "cheng2020-anchor", "quality": quality}
        state_dict = None
        weights = None
        index = 0

    codec = build(Rate())
    twin = meta_copy(codec)
    # the decoder's inputs (latents) at that size, made on meta and materialised as zeros for the real runs
    with torch.no_grad():
        latents_meta = twin.encode_networks(torch.zeros(1, 3, height, width, device="meta"))
    leaves_meta, spec = tree_flatten(latents_meta)
    if counter != "ours":
        leaves = tuple(torch.zeros(t.shape) for t in leaves_meta)
        wrapper = PartForward("decoder", codec.decoder, codec.decode_networks, spec).eval()
    baseline = _rss_mib()
    baseline_peak = _peak_mib()
    t0 = time.perf_counter()
    if counter == "ours":
        counter_mode = OpCounter({"decoder": twin.decoder}, "decoder")
        with torch.no_grad(), counter_mode:
            twin.decode_networks(latents_meta)
        total = counter_mode.result().macs
    elif counter == "fvcore":
        from fvcore.nn import FlopCountAnalysis

        with torch.no_grad():
            fca = FlopCountAnalysis(wrapper, leaves)
            fca.unsupported_ops_warnings(False)
            fca.uncalled_modules_warnings(False)
            total = int(fca.total())
    elif counter == "ptflops":
        with torch.no_grad():
            total = _ptflops_total(_Splat(wrapper), leaves, "aten")
    wall = time.perf_counter() - t0
    peak = _peak_mib()
    return {"counter": counter, "total": total, "wall_s": wall, "peak_rss_mib": peak, "baseline_mib": baseline,
            # growth of the process's peak during the count (0 when it never exceeded the earlier peak)
            "peak_above_baseline_mib": max(0.0, peak - baseline_peak),
            "baseline_peak_mib": baseline_peak}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=3840)
    ap.add_argument("--height", type=int, default=2160)
    ap.add_argument("--quality", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--counters", default="ours,fvcore,ptflops")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.width, a.height, a.quality, a.threads)))
        return 0
    results = {}
    for counter in a.counters.split(","):
        proc = subprocess.run([sys.executable, __file__, "--one", counter, "--width", str(a.width), "--height",
                               str(a.height), "--quality", str(a.quality), "--threads", str(a.threads)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{counter}: failed\n{proc.stderr[-2000:]}")
            continue
        results[counter] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"cheng2020-anchor (quality {a.quality}) decoder networks at {a.width}×{a.height}, "
          f"{a.threads} threads, each counter in its own process")
    print(f"{'counter':<10} {'strict MACs':>16} {'kMAC/px':>9} {'wall s':>9} {'peak RSS MiB':>13} "
          f"{'baseline MiB':>13} {'above baseline MiB':>19}")
    for name, r in results.items():
        print(f"{name:<10} {r['total']:>16,} {r['total'] / (a.width * a.height) / 1000:>9.3f} {r['wall_s']:>9.3f} "
              f"{r['peak_rss_mib']:>13.0f} {r['baseline_mib']:>13.0f} {r['peak_above_baseline_mib']:>19.1f}")
    ours = results.get("ours")
    for name in ("fvcore", "ptflops"):
        r = results.get(name)
        if ours and r:
            speed = r["wall_s"] / ours["wall_s"]
            mem = r["peak_above_baseline_mib"] / max(ours["peak_above_baseline_mib"], 1.0)
            print(f"ours vs {name}: {speed:,.0f}× faster, {mem:,.0f}× less peak memory above baseline "
                  f"(ours counted as ≥ 1 MiB), totals {'identical' if r['total'] == ours['total'] else 'DIFFER'}"
                  f" ({r['total'] - ours['total']:+,})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
