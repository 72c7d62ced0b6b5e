"""`jpegai-profile SUBMISSION_DIR [options]`: the main job — measure, print the standard table, write the report."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InputError
from .common import EXIT_FAILED, EXIT_OK, ArgParser, apply_overrides, console, devices

NAME = "profile"
ALIASES: tuple[str, ...] = ()


def add_profile_options(p: ArgParser) -> None:
    """The options of a profile run (shared with `zoo`, which profiles the manifest it writes)."""
    p.add_argument("--config", type=Path, default=None, help="test conditions (default: the shipped profile.toml)")
    p.add_argument("--rates", type=str, default=None, help="only these target rates, e.g. 0.06,0.5")
    p.add_argument("--images", type=str, default=None, help="'builtin' or a directory of PNG files")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per image (overrides profile.toml)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs per image (overrides profile.toml)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (overrides profile.toml)")
    p.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                   help="where to time: cpu, cuda, or all available (default)")
    p.add_argument("--min-gpu-memory", action="store_true",
                   help="find each model's minimum GPU memory by bisection (CUDA only; see profile.toml)")
    p.add_argument("--quick", action="store_true", help="smoke run: one rate point, one image, one timed repeat")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="wall-clock limit per rate point's worker, seconds (overrides worker.timeout_s)")
    p.add_argument("--memory-limit", type=int, default=None, metavar="MIB",
                   help="memory limit per worker, MiB (overrides worker.memory_limit_mib)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="rate points' workers at once (default: timing.slots_per_host + 1 where the machine has a "
                        "core beside the timing slots, one per slot where the slots take every core, else 1); "
                        "timed phases always run in the timing slots")
    p.add_argument("--resume", action="store_true",
                   help="continue the report in --out: skip rate points already measured (only when the "
                        "submission's files and the test conditions are unchanged)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def jobs_for(args, cond, n_rates: int) -> int:
    """`--jobs`, or by default one worker per timing slot plus one whose untimed work runs beside them,
    where this machine has a core beside the slots; one per slot where the slots take every core (each
    worker holds its slot for its whole life, profiler/slots.py); never more than the rate points."""
    from ..runner import default_pool

    if getattr(args, "jobs", None) is not None:
        if args.jobs < 1:
            raise InputError("command line", "--jobs", f"expected a positive number, got {args.jobs}")
        return min(args.jobs, max(1, n_rates))
    pool = default_pool(cond)
    per_host = (cond.timing.slots_per_host + 1 if pool.can_overlap else
                len(pool.slots) if pool.whole_life else 1)
    return max(1, min(n_rates, per_host))


def parser() -> ArgParser:
    p = ArgParser(prog="jpegai-profile",
                  description="Profile a JPEG AI submission: parameters, kMAC/px, runtime, memory, precision.",
                  epilog="Other commands: jpegai-profile check …, jpegai-profile aggregate …, jpegai-profile zoo ARCH … "
                         "(also spelled --zoo ARCH)")
    p.add_argument("submission", type=Path, help="submission directory (with submission.toml)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: reports/<codec-slug>/)")
    p.add_argument("--write-bitstreams", type=Path, default=None, metavar="DIR",
                   help="also write each bitstream and decoded picture as DIR/<target>/<stem>.bin and .png "
                        "(8-bit RGB, clamp(0,1)·255 rounded half to even): a delivery for `verify`")
    p.add_argument("--anchors", type=Path, default=None, metavar="DIR",
                   help="anchor reports (from `jpegai-profile anchors`, e.g. reports/anchors/): add the BD-rates "
                        "against each to the report")
    p.add_argument("--scheduler", type=str, default=None, metavar="ADDRESS",
                   help="run the rate points on this Dask cluster (e.g. tcp://head:8786; the dask extra): "
                        "the submission at the same path on every worker")
    add_profile_options(p)
    return p


def _rates(text: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError("command line", "--rates", f"expected comma-separated numbers, got {text!r}") from None
    if not vals or any(not v > 0 or v == float("inf") for v in vals):
        raise InputError("command line", "--rates", f"expected positive rates, got {text!r}")
    return vals


def select_rates(sub, rates: str | None, quick: bool) -> list[int]:
    if rates:
        from ..derive import same_rate

        idx = []
        for w in _rates(rates):
            match = [r for r in sub.rates if same_rate(r.target_bpp, w)]
            if not match:
                known = ", ".join(f"{r.target_bpp:g}" for r in sub.rates)
                raise InputError("command line", "--rates", f"no rate point at {w:g} bpp (submission has {known})")
            idx.append(match[0].index)
        return idx
    if quick:
        return [sub.rates[0].index]
    return [r.index for r in sub.rates]


def _write_jobs(args, rate_indices: list[int]) -> dict[int, dict] | None:
    """--write-bitstreams: every worker writes its rate's folder of the delivery layout."""
    target = getattr(args, "write_bitstreams", None)
    if target is None:
        return None
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(target, "--write-bitstreams", f"cannot be created ({exc.strerror})") from None
    return {i: {"write_bitstreams": str(target.resolve())} for i in rate_indices}


def phase_text(info: dict) -> str:
    """One rate point's phase as the progress line shows it: "timing chelsea (2/4)",
    "resolutions 3840×2160: real call (decoder: …), about 520 s"."""
    text = info["phase"]
    if "image" in info:
        text += f" {info['image']}"
        if "n" in info and "of" in info:
            text += f" ({info['n'] + 1}/{info['of']})"
    if "detail" in info:
        text += f" {info['detail']}"
    if info.get("estimate_s"):
        text += f", about {info['estimate_s']:.0f} s"
    return text


class _RateClock:
    """What is left of the profile, from the rate points finished so far (their mean wall time), with
    `jobs` of them running at once."""

    def __init__(self, total: int, jobs: int = 1):
        self.total = total
        self.jobs = max(1, jobs)
        self.done: list[float] = []
        self.running: dict = {}

    def event(self, kind: str, info: dict | None = None) -> None:
        import time

        rate = (info or {}).get("rate")
        if kind == "rate":
            self.running[rate] = time.monotonic()
        elif kind == "rate_done" and rate in self.running:
            self.done.append(time.monotonic() - self.running.pop(rate))
        elif kind == "rate_done":
            self.total -= 1          # a resumed rate point: nothing to wait for

    def left(self) -> str:
        import time

        if not self.done:
            return ""
        mean = sum(self.done) / len(self.done)
        now = time.monotonic()
        started = sum(min(mean, now - t) for t in self.running.values())
        rest = max(0.0, (mean * (self.total - len(self.done)) - started) / self.jobs)
        return f" · about {rest / 60:.0f} min left" if rest >= 90 else f" · about {rest:.0f} s left"


def load_anchors(directory: Path) -> list[tuple[str, object]]:
    """(path, report) of every anchor report below `directory`; none is bad input (one line, exit 2)."""
    from ..bdrate import find_anchor_reports
    from ..model.io import read_report

    if not directory.is_dir():
        raise InputError(directory, "--anchors", "folder not found (make it with `jpegai-profile anchors`)")
    found = []
    for path in find_anchor_reports(directory):
        report = read_report(path)
        if report.anchor is not None:
            found.append((str(path), report))
    if not found:
        raise InputError(directory, "--anchors", "holds no anchor report (make them with `jpegai-profile anchors`)")
    return found


def run(args) -> int:
    if getattr(args, "scheduler", None) and getattr(args, "client", None) is None:
        from ..cluster import connect

        with connect(scheduler=args.scheduler) as client:
            args.client = client
            return run(args)
    from ..conditions import load_conditions
    from ..submission import load_submission
    from ..zygote import Zygote, worker_env

    cond = apply_overrides(load_conditions(args.config), repeats=args.repeats, warmup=args.warmup,
                           threads=args.threads, min_gpu_memory=args.min_gpu_memory, timeout=args.timeout,
                           memory_limit=args.memory_limit, images=args.images, quick=args.quick)
    # The workers' zygote (profiler/zygote.py) starts before this process reads the submission (whose
    # weights check imports torch) and imports the rest of the suite: its ~4 s of imports run beside
    # this command's own on another core, so the first worker does not wait for both one after the other
    # (2-core machine, RefNet: first worker forked 3.8 s after the start, 7.9 s when the zygote started
    # after the submission was read). A Dask cluster's workers start their own processes.
    zygote = (Zygote(worker_env(cond.timing.threads))
              if cond.worker.zygote and getattr(args, "client", None) is None else None)
    try:
        sub = load_submission(args.submission)
        rate_indices = select_rates(sub, args.rates, args.quick)
    except BaseException:
        if zygote is not None:
            zygote.close()      # one that forked nothing is killed at once
        raise
    if zygote is not None and not rate_indices:
        zygote.close()
        zygote = None
    try:
        return _run(args, sub, cond, rate_indices, zygote)
    finally:
        if zygote is not None:
            zygote.close()


def _run(args, sub, cond, rate_indices: list[int], zygote) -> int:
    from functools import partial

    from rich.markup import escape
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ..compliance import evaluate
    from ..images import check_images
    from ..outdir import prepare_out
    from ..render import console as console_render
    from ..render import write_all
    from ..runner import profile
    from ..submission import slug

    if getattr(args, "client", None) is not None:
        from ..cluster import profile_on
    anchors = load_anchors(args.anchors) if getattr(args, "anchors", None) is not None else []
    out_dir = args.out or Path("reports") / slug(sub.codec)
    check_images(cond.images, cond.source)     # a bad picture set is bad input, before any worker
    out_lock = prepare_out(out_dir, sub.directory, sub.codec, explicit=args.out is not None and not getattr(args, "out_is_default", False),
                           resume=args.resume)
    out = console()
    name = escape(sub.codec)

    with out_lock:  # held until the tables are written: a second profile into --out is refused
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=out, transient=True) as bar:
            task = bar.add_task(f"profiling {name}", total=len(rate_indices))

            client = getattr(args, "client", None)     # a Dask cluster's (--scheduler, batch): profiler/cluster.py
            jobs = len(client.scheduler_info()["workers"]) if client is not None else jobs_for(args, cond, len(rate_indices))
            clock = _RateClock(len(rate_indices), jobs)

            def progress(kind: str, info: dict) -> None:
                clock.event(kind, info)
                if kind == "phase":
                    bar.update(task, description=f"{name} @ {info['rate']:g} bpp: {escape(phase_text(info))}"
                                                 f"{clock.left()}")
                elif kind == "rate":
                    bar.update(task, description=f"{name} @ {info['rate']:g} bpp: starting worker{clock.left()}")
                elif kind == "image":
                    bar.update(task, description=f"{name} @ {info['rate']:g} bpp: {escape(str(info['name']))}")
                elif kind == "resolutions":
                    bar.update(task, description=f"{name} @ {info['rate']:g} bpp: resolutions and cross-check")
                elif kind == "tasks":
                    bar.update(task, description=f"{name} @ {info['rate']:g} bpp: compressed-domain tasks")
                elif kind == "cuda":
                    bar.update(task, description=f"{name} @ {info['rate']:g} bpp: GPU")
                elif kind == "rate_done":
                    bar.advance(task)
                elif kind == "resume":
                    print(f"jpegai-profile: {info['message']}", file=sys.stderr)

            run_profile = partial(profile, zygote=zygote) if client is None else partial(profile_on, client)
            report = run_profile(sub, cond, out_dir, rate_indices, devices(args.device), progress,
                             options={"quick": args.quick, "jobs": jobs, "rates": [r.target_bpp for r in sub.rates
                                                                                   if r.index in rate_indices]},
                             resume=args.resume, job_extra=_write_jobs(args, rate_indices), jobs=jobs)
        report = evaluate(report, cond)
        if anchors:
            from ..bdrate import with_bd_rates

            report = with_bd_rates(report, anchors)
        console_render.render(report, out)
        written = write_all(report, out_dir)
        out.print("wrote " + ", ".join(escape(str(p)) for p in written), highlight=False)
        failed = [r for r in report.rates if not r.ok]
        for r in failed:  # what failed, on stderr too: batch logs keep it apart from the table
            err = r.error
            print(f"jpegai-profile: rate {r.target_bpp:g} bpp failed ({err.kind.value if err else 'unknown'}): "
                  f"{((err.message if err else '') or 'unknown error').splitlines()[0]} — details in {out_dir / 'report.json'}",
                  file=sys.stderr)
    return EXIT_OK if not failed else EXIT_FAILED
