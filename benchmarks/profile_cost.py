"""What a full profile costs beyond the runs it must time (issue #12), side by side from one run.

(a) RefNet (submissions/refnet), default conditions: the real CLI in a subprocess; from the report it
    wrote, the floor — (warm-up + repeats) × (encode + decode) per picture and rate point, from the
    measured medians — against the workers' wall time and the whole command's wall time (target:
    whole ÷ floor ≤ 1.3), with the seconds of each untimed step and how many resolution and cross-check
    parts were shared with an earlier rate point.
(b) A codec without CountableNetworks: a CompressAI model not among the bundled four
    (tests/codecs/plain_compressai, `--arch`, default mbt2018-mean), profiled at one rate point with the
    default conditions. Its extra-resolution counting now (the report's `untimed.resolutions`: replay,
    every core) against before: a real counted encode()/decode() of a noise picture at each resolution
    at one thread (what the suite did), measured here; and whether the report's 1920×1080 counts agree
    exactly with that real count (every module's MACs).

    With several `--jobs` settings (default 1 and auto) each is run and printed, and the timed medians
    of each against the first: what overlapping rate points (their untimed work on the other cores) does
    to the timings. `--slots 2` adds a run with timing.slots_per_host = 2 (K timed phases at once, each
    worker on its own core where the slots take every core): what K slots do to the medians.
    `--timing 'lend_idle_slots = false'` adds a run with that [timing] line changed (the slots' cores
    not lent to untimed work while idle); `--worker 'zygote = false'` one with every worker started as
    a fresh interpreter instead of forked from the zygote (profiler/zygote.py).
Usage: python benchmarks/profile_cost.py [--only a|b] [--rates 0.03,0.5] [--jobs 1,auto] [--slots 2]
       [--timing 'KEY = VALUE'] [--worker 'KEY = VALUE'] [--arch mbt2018-mean]
       [--images DIR] [--before-sizes 1920x1080,3840x2160]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run_profile(submission: Path, extra: list[str]) -> tuple[dict, float]:
    """(report, whole command's wall time) of `python -m profiler SUBMISSION --device cpu EXTRA`."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "profiler", str(submission), "--device", "cpu", "--out", out, *extra]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        total = time.perf_counter() - t0
        path = Path(out) / "report.json"
        if not path.is_file():
            sys.exit(f"profile failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        return json.loads(path.read_text()), total


def floor_s(rep: dict) -> float:
    cond = rep["conditions"]["timing"]
    runs = cond["warmup"] + cond["repeats"]
    return sum(runs * (img["timing"]["cpu"]["encode"]["median_s"] + img["timing"]["cpu"]["decode"]["median_s"])
               for r in rep["rates"] if r["status"] == "ok" for img in r["images"])


def task_floor_s(rep: dict) -> float:
    """The task pipelines' runs that must be timed too ([[tasks]], profiler/tasks.py): per pipeline
    measured in this rate point (the latent pipeline, super-resolution's quarter-picture decode, each
    anchor on the original where it was measured here rather than taken from another rate point; a
    decoded anchor composed of measured parts runs nothing), its counted run (the warm-up) and
    `tasks.repeats` timed runs."""
    runs = 1 + rep["conditions"]["tasks"]["repeats"]
    total = 0.0

    def add(entry) -> None:
        nonlocal total
        if isinstance(entry, dict) and not entry.get("measured_on") and not entry.get("composed_of"):
            t = ((entry.get("timing") or {}).get("cpu") or {}).get("median_s")
            total += runs * t if t else 0.0

    for r in rep["rates"]:
        for task in r.get("tasks") or []:
            for pic in task.get("pictures") or []:
                add(pic.get("latent"))
                add(pic.get("decode"))
                for anchor in (pic.get("anchors") or {}).values():
                    add(anchor.get("decoded"))
                    add(anchor.get("original"))
    return total


def untimed_s(rep: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in rep["rates"]:
        for step, rec in (r.get("untimed") or {}).items():
            out[step] = out.get(step, 0.0) + rec["seconds"]
    return out


def _medians(rep: dict, part: str) -> dict[tuple[float, str], float]:
    return {(r["target_bpp"], img["name"]): img["timing"]["cpu"][part]["median_s"]
            for r in rep["rates"] if r["status"] == "ok" for img in r["images"]}


def part_a(args) -> None:
    extra = ["--rates", args.rates] if args.rates else []
    if args.images:
        extra += ["--images", args.images]
    runs = {}
    for jobs in args.jobs.split(","):
        rep, total = run_profile(ROOT / "submissions" / "refnet", extra + (["--jobs", jobs] if jobs != "auto" else []))
        runs[jobs] = (rep, total)
    variants = [f"slots_per_host = {int(k)}" for k in args.slots.split(",") if k] if args.slots else []
    with tempfile.TemporaryDirectory() as tmp:
        for n, line in enumerate(variants + list(args.timing or []) + list(args.worker or [])):
            # The default conditions with one [timing] or [worker] line changed, the default --jobs for them.
            key = line.split("=")[0].strip()
            text = (ROOT / "profiler" / "profile.toml").read_text()
            old = next(x for x in text.splitlines() if x.startswith(key + " ="))
            config = Path(tmp) / f"variant{n}.toml"
            config.write_text(text.replace(old, line))
            rep, total = run_profile(ROOT / "submissions" / "refnet", extra + ["--config", str(config)])
            runs[f"auto, {line}"] = (rep, total)
    print(f"(a) RefNet, default conditions{' at ' + args.rates + ' bpp' if args.rates else ''}, "
          f"side by side in one run:")
    for jobs, (rep, total) in runs.items():
        floor = floor_s(rep)
        worker = sum(r["worker"]["wall_s"] or 0.0 for r in rep["rates"])
        ok = [r for r in rep["rates"] if r["status"] == "ok"]
        shared_res = sum(1 for r in ok for e in r["resolutions"] for p in (e.get("parts") or {}).values()
                         if p.get("measured_on"))
        all_res = sum(len(e.get("parts") or {}) for r in ok for e in r["resolutions"])
        shared_cc = sum(1 for r in ok for part in ("encoder", "decoder")
                        if ((r.get("crosscheck") or {}).get(part) or {}).get("measured_on"))
        held = sum(h["held_s"] for r in ok for h in r["worker"].get("slots") or [] if h["phase"] == "cpu")
        n_img = sum(len(r["images"]) for r in ok)
        print(f"  --jobs {jobs} (ran with {rep['options'].get('jobs')}): {len(ok)} rate points ok, {n_img} picture runs")
        print(f"    floor (warm-up + repeats) × (enc + dec): {floor:8.1f} s")
        print(f"    timed phases (slot held), in all:         {held:8.1f} s   ÷ floor {held / floor:5.2f}")
        print(f"    workers' wall time, summed:               {worker:8.1f} s   ÷ floor {worker / floor:5.2f}")
        print(f"    whole command:                            {total:8.1f} s   ÷ floor {total / floor:5.2f}   (target ≤ 1.3)")
        tasks = task_floor_s(rep)
        if tasks:
            print(f"    + the task pipelines' timed runs:         {tasks:8.1f} s   whole ÷ (floor + tasks) "
                  f"{total / (floor + tasks):5.2f}")
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(untimed_s(rep).items()))
        print(f"    untimed steps (untimed cores): {steps}")
        print(f"    shared with an earlier rate point: {shared_res}/{all_res} resolution parts, "
              f"{shared_cc}/{2 * len(ok)} cross-check parts")
    names = list(runs)
    if len(names) > 1:
        base = runs[names[0]][0]
        for other in names[1:]:
            for part in ("encode", "decode"):
                a, b = _medians(base, part), _medians(runs[other][0], part)
                ratios = sorted(b[k] / a[k] for k in a if k in b and a[k] > 0)
                if ratios:
                    mid = ratios[len(ratios) // 2]
                    print(f"    {part} medians, --jobs {other} ÷ --jobs {names[0]}: median {mid:.3f}, "
                          f"range {ratios[0]:.3f} – {ratios[-1]:.3f} over {len(ratios)} picture runs")


def _plain_codec(arch: str):
    spec = importlib.util.spec_from_file_location("plain_compressai",
                                                  ROOT / "tests" / "codecs" / "plain_compressai" / "codec.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.PlainCompressAI(arch, 1, "cpu")


def part_b(args) -> None:
    import torch

    from profiler.counting.meta import count_real_calls

    with tempfile.TemporaryDirectory() as tmp:
        sub = Path(tmp) / "plain"
        sub.mkdir()
        src = ROOT / "tests" / "codecs" / "plain_compressai"
        (sub / "codec.py").write_text((src / "codec.py").read_text())
        (sub / "submission.toml").write_text(
            (src / "submission.toml").read_text().replace('"mbt2018-mean"', json.dumps(args.arch)))
        extra = ["--rates", "0.25"] + (["--images", args.images] if args.images else [])
        rep, total = run_profile(sub, extra)
    r = rep["rates"][0]
    if r["status"] != "ok":
        sys.exit(f"(b) failed: {r['error']}")
    now = (r.get("untimed") or {}).get("resolutions", {})
    print(f"(b) {args.arch} as a plain build() codec (no encode_networks), one rate point, "
          f"{len(r['images'])} pictures: whole command {total:.1f} s, floor {floor_s(rep):.1f} s")
    for e in r["resolutions"]:
        how = ", ".join(f"{p} {s['method']}" for p, s in e["parts"].items())
        print(f"    {e['width']}×{e['height']}: {how}; {e['seconds']:.2f} s")
    print(f"    resolutions now:    {now.get('seconds', float('nan')):8.2f} s  at {now.get('threads')} threads "
          "(replays and the check that accepts them)")
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.before_sizes.split(",") if s]
    codec = _plain_codec(args.arch)
    torch.set_num_threads(1)
    before = 0.0
    real_1080 = None
    for w, h in sizes:
        t0 = time.perf_counter()
        enc, dec = count_real_calls(codec, w, h)
        dt = time.perf_counter() - t0
        before += dt
        print(f"    before, {w}×{h}: a real counted encode()/decode() at 1 thread: {dt:8.2f} s")
        if (w, h) == (1920, 1080):
            real_1080 = (enc.to_dict(), dec.to_dict())
    print(f"    resolutions before: {before:8.2f} s  at 1 thread   (now ÷ before {now.get('seconds', 0) / before:.4f})")
    if real_1080 is not None:
        entry = next(e for e in r["resolutions"] if (e["width"], e["height"]) == (1920, 1080))
        for part, real in zip(("encoder", "decoder"), real_1080):
            mine = entry[part]
            same_modules = {k: v["macs"] for k, v in mine["per_module"].items() if v["macs"]} == \
                {k: v["macs"] for k, v in real["per_module"].items() if v["macs"]}
            verdict = "exact" if mine["macs"] == real["macs"] and same_modules else "DIFFERS"
            print(f"    1920×1080 {part}: report {mine['macs']:,} MACs ({entry['parts'][part]['method']}), "
                  f"real call {real['macs']:,} MACs, per module {'equal' if same_modules else 'different'}: {verdict}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["a", "b"], default=None)
    ap.add_argument("--rates", default=None, help="(a) only these RefNet rates (default: all nine)")
    ap.add_argument("--images", default=None, help="test pictures (default: the conditions' own)")
    ap.add_argument("--jobs", default="1,auto", help="(a) the --jobs settings run side by side (default 1,auto)")
    ap.add_argument("--slots", default="", help="(a) also run with timing.slots_per_host = K, for each K "
                                                "(e.g. 2), the default --jobs for it")
    ap.add_argument("--worker", action="append", metavar="'KEY = VALUE'",
                    help="(a) also run with this [worker] line of the default conditions changed "
                         "(e.g. 'zygote = false': every worker a fresh interpreter); repeatable")
    ap.add_argument("--timing", action="append", metavar="'KEY = VALUE'",
                    help="(a) also run with this [timing] line of the default conditions changed "
                         "(e.g. 'lend_idle_slots = false'); repeatable")
    ap.add_argument("--arch", default="mbt2018-mean", help="(b) a CompressAI zoo name (not one bundled)")
    ap.add_argument("--before-sizes", default="1920x1080,3840x2160",
                    help="(b) resolutions at which the old way (a real call at one thread) is measured")
    args = ap.parse_args()
    if args.only in (None, "a"):
        part_a(args)
    if args.only in (None, "b"):
        part_b(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
