"""How long `aggregate` takes for a call's worth of reports: 10 and 100 copies of one real report.

1. A real report: `REPORT` if given, else a quick RefNet profile made here in a temporary folder
   (`jpegai-profile submissions/refnet --quick --device cpu`, about a minute).
2. N copies of it, each with its own proponent and codec, written as N report trees; every tenth copy's
   rate points carry another CPU model (so the environment comparison has rows to flag).
3. `profiler.aggregation.aggregate` over the tree (read, validate, derive, compare conditions and
   machines) and `write_outputs` (CSV, Markdown, HTML with plots), timed with perf_counter, median of
   `--runs`, for N = 10 and N = 100, side by side; the target is 100 reports under 5 s.
4. The command as a user runs it, `jpegai-profile aggregate` over the 100 in a fresh process (imports
   included), once.

    python benchmarks/aggregate_scale.py [REPORT] [--runs 3]
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

TARGET_S = 5.0


def quick_report(folder: Path) -> Path:
    out = folder / "refnet"
    subprocess.run([sys.executable, "-m", "profiler", str(ROOT / "submissions" / "refnet"), "--quick",
                    "--device", "cpu", "--out", str(out)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return out / "report.json"


def copies(report_path: Path, root: Path, n: int) -> None:
    from profiler.model.io import read_report, write_report
    from profiler.model.report import HostInfo

    rep = read_report(report_path)
    for i in range(n):
        sub = rep.submission.model_copy(update={"proponent": f"Proponent {i:03d}", "codec": f"codec-{i:03d}"})
        rates = rep.rates
        if i % 10 == 9:
            rates = [r.model_copy(update={"host": HostInfo(hostname=f"node{i}", cpu_model="Other CPU",
                                                           torch=r.host.torch if r.host else None)})
                     for r in rates]
        write_report(rep.model_copy(update={"submission": sub, "rates": rates}), root / f"p{i:03d}" / "report.json")


def timed(root: Path, out: Path, runs: int) -> tuple[float, float, int]:
    from profiler.aggregation import aggregate, write_outputs

    agg, written = [], []
    flagged = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        df = aggregate([root])
        t1 = time.perf_counter()
        write_outputs(df, out)
        t2 = time.perf_counter()
        agg.append(t1 - t0)
        written.append(t2 - t1)
        flagged = int(((df["row"] == "rate") & df["warning"].str.contains("another machine")).sum())
    return statistics.median(agg), statistics.median(written), flagged


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", nargs="?", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="jpegai-aggregate-") as tmp:
        tmp = Path(tmp)
        report = args.report or quick_report(tmp)
        rows = []
        for n in (10, 100):
            root = tmp / f"n{n}"
            copies(report, root, n)
            read_s, write_s, flagged = timed(root, tmp / f"agg{n}", args.runs)
            rows.append((n, read_s, write_s, flagged))
        print(f"report: {report} ({report.stat().st_size / 1024:.0f} KiB), median of {args.runs} runs")
        print(f"{'reports':>8} {'aggregate s':>12} {'write s':>9} {'total s':>9} {'s/report':>9} {'flagged rows':>13}")
        for n, r, w, f in rows:
            print(f"{n:>8} {r:>12.2f} {w:>9.2f} {r + w:>9.2f} {(r + w) / n:>9.3f} {f:>13}")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "profiler", "aggregate", str(tmp / "n100"), "--out",
                        str(tmp / "agg-cli")], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        print(f"jpegai-profile aggregate over the 100, a fresh process: {time.perf_counter() - t0:.2f} s")
        total = rows[-1][1] + rows[-1][2]
        ratio = total / (rows[0][1] + rows[0][2])
        print(f"100 vs 10 reports: {ratio:.1f}× the time; 100 reports in {total:.2f} s "
              f"({'meets' if total < TARGET_S else 'misses'} the {TARGET_S:g} s target)")
        return 0 if total < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
