"""Command line: parses arguments, calls the rooms, maps errors to exit codes.

Exit status: 0 everything measured; 1 a rate point failed (or, for `check`, a mandatory rule failed);
2 bad input (a missing directory, a malformed manifest or config, a bad option value).
No measuring happens here.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import traceback
from pathlib import Path

from .errors import InputError

EXIT_OK, EXIT_FAILED, EXIT_INPUT = 0, 1, 2

SUBCOMMANDS: dict[str, object] = {}


class _Parser(argparse.ArgumentParser):
    """argparse that raises InputError (one line, exit 2) instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError("command line", None, message)


def _rates(text: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError("command line", "--rates", f"expected comma-separated numbers, got {text!r}") from None
    if not vals or any(v <= 0 for v in vals):
        raise InputError("command line", "--rates", f"expected positive rates, got {text!r}")
    return vals


def profile_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="jpegai-profile",
                description="Profile a JPEG AI submission: parameters, kMAC/px, runtime, memory, precision.",
                epilog="Other commands: " + ", ".join(f"jpegai-profile {c} …" for c in SUBCOMMANDS) if SUBCOMMANDS else None)
    p.add_argument("submission", type=Path, help="submission directory (with submission.toml)")
    p.add_argument("--config", type=Path, default=None, help="test conditions (default: profile.toml)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: reports/<codec>/)")
    p.add_argument("--rates", type=str, default=None, help="only these target rates, e.g. 0.06,0.5")
    p.add_argument("--images", type=str, default=None, help="'builtin' or a directory of PNG files")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per image (overrides profile.toml)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs per image (overrides profile.toml)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (overrides profile.toml)")
    p.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                   help="where to time: cpu, cuda, or all available (default)")
    p.add_argument("--min-gpu-memory", action="store_true",
                   help="find each model's minimum GPU memory by bisection (CUDA only; see profile.toml)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: one rate point, one image, one timed repeat")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="wall-clock limit per rate point's worker, seconds (overrides worker.timeout_s)")
    p.add_argument("--memory-limit", type=int, default=None, metavar="MIB",
                   help="memory limit per worker, MiB (overrides worker.memory_limit_mib)")
    p.add_argument("--resume", action="store_true",
                   help="continue the report in --out: skip rate points already measured (only when the "
                        "submission's files and the test conditions are unchanged)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _apply_overrides(cond, args):
    from .conditions import ImageSpec

    timing = cond.timing
    if args.repeats is not None:
        if args.repeats < 1:
            raise InputError("command line", "--repeats", f"must be at least 1, got {args.repeats}")
        timing = dataclasses.replace(timing, repeats=args.repeats)
    if args.warmup is not None:
        if args.warmup < 0:
            raise InputError("command line", "--warmup", f"must be 0 or more, got {args.warmup}")
        timing = dataclasses.replace(timing, warmup=args.warmup)
    if args.threads is not None:
        if args.threads < 1:
            raise InputError("command line", "--threads", f"must be at least 1, got {args.threads}")
        timing = dataclasses.replace(timing, threads=args.threads)
    if getattr(args, "min_gpu_memory", False):
        timing = dataclasses.replace(timing, min_gpu_memory=True)
    worker = cond.worker
    if getattr(args, "timeout", None) is not None:
        if not args.timeout > 0 or args.timeout == float("inf"):
            raise InputError("command line", "--timeout", f"expected a positive number of seconds, got {args.timeout:g}")
        worker = dataclasses.replace(worker, timeout_s=args.timeout)
    if getattr(args, "memory_limit", None) is not None:
        if args.memory_limit < 1:
            raise InputError("command line", "--memory-limit", f"expected a positive number of MiB, got {args.memory_limit}")
        worker = dataclasses.replace(worker, memory_limit_mib=args.memory_limit)
    cond = dataclasses.replace(cond, worker=worker)
    images = cond.images
    if args.images is not None:
        if args.images != "builtin":
            if not Path(args.images).is_dir():
                raise InputError(args.images, "--images", "image directory not found")
            images = ImageSpec(source=str(Path(args.images).resolve()), builtin=images.builtin)
    if args.quick:
        timing = dataclasses.replace(timing, repeats=args.repeats or 1, warmup=1)
        images = dataclasses.replace(images, limit=1)
        if images.source == "builtin" and args.images is None:
            # The smallest built-in photograph, with an odd width (300×451): quick and still a real case.
            images = dataclasses.replace(images, builtin=("chelsea",))
    return dataclasses.replace(cond, timing=timing, images=images)


def _select_rates(sub, args) -> list[int]:
    if args.rates:
        wanted = _rates(args.rates)
        idx = []
        for w in wanted:
            match = [r for r in sub.rates if abs(r.target_bpp - w) < 1e-9]
            if not match:
                known = ", ".join(f"{r.target_bpp:g}" for r in sub.rates)
                raise InputError("command line", "--rates", f"no rate point at {w:g} bpp (submission has {known})")
            idx.append(match[0].index)
        return idx
    if args.quick:
        return [sub.rates[0].index]
    return [r.index for r in sub.rates]


def _devices(choice: str) -> list[str]:
    return ["cpu"] if choice == "cpu" else ["cuda"] if choice == "cuda" else ["cpu", "cuda"]


def cmd_profile(argv: list[str]) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from .compliance import evaluate
    from .conditions import load_conditions
    from .images import check_images
    from .outdir import prepare_out
    from .render import console as console_render
    from .render import write_all
    from .runner import profile
    from .submission import load_submission

    args = profile_parser().parse_args(argv)
    sub = load_submission(args.submission)
    cond = _apply_overrides(load_conditions(args.config), args)
    rate_indices = _select_rates(sub, args)
    out_dir = args.out or Path("reports") / sub.codec
    check_images(cond.images, cond.source)     # a bad picture set is bad input, before any worker
    out_lock = prepare_out(out_dir, sub.directory, sub.codec, explicit=args.out is not None, resume=args.resume)
    devices = _devices(args.device)
    # Logs and CI are not terminals: give the standard table room instead of rich's 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=200)

    with out_lock:  # held until the tables are written: a second profile into --out is refused
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=console, transient=True) as bar:
            task = bar.add_task(f"profiling {sub.codec}", total=len(rate_indices))

            def progress(kind: str, info: dict) -> None:
                if kind == "rate":
                    bar.update(task, description=f"{sub.codec} @ {info['rate']:g} bpp: starting worker")
                elif kind == "image":
                    bar.update(task, description=f"{sub.codec} @ {info['rate']:g} bpp: {info['name']}")
                elif kind == "cuda":
                    bar.update(task, description=f"{sub.codec} @ {info['rate']:g} bpp: GPU")
                elif kind == "rate_done":
                    bar.advance(task)
                elif kind == "resume":
                    print(f"jpegai-profile: {info['message']}", file=sys.stderr)

            report = profile(sub, cond, out_dir, rate_indices, devices, progress,
                             options={"quick": args.quick, "rates": [sub.rates[i].target_bpp for i in range(len(sub.rates))
                                                                     if sub.rates[i].index in rate_indices]},
                             resume=args.resume)
        report.compliance = evaluate(report, cond)
        console_render.render(report, console)
        written = write_all(report, out_dir)
        console.print("wrote " + ", ".join(str(p) for p in written))
        failed = [r for r in report.rates if not r.ok]
        for r in failed:  # what failed, on stderr too: batch logs keep it apart from the table
            err = r.error or {}
            print(f"jpegai-profile: rate {r.target_bpp:g} bpp failed ({err.get('kind', 'unknown')}): "
                  f"{(err.get('message') or 'unknown error').splitlines()[0]} — details in {out_dir / 'report.json'}", file=sys.stderr)
    return EXIT_OK if not failed else EXIT_FAILED


def cmd_aggregate(argv: list[str]) -> int:
    from .aggregation import main as aggregate_main

    return aggregate_main(argv)


SUBCOMMANDS["aggregate"] = cmd_aggregate


def cmd_zoo(argv: list[str]) -> int:
    """`jpegai-profile --zoo ARCH [--quality Q] …`: a CompressAI model without a manifest (profiler/zoo.py)."""
    from .zoo import cmd_zoo as run

    return run(argv)


SUBCOMMANDS["--zoo"] = cmd_zoo


from .checkcmd import cmd_check  # noqa: E402  (the `check` subcommand, profiler/checkcmd.py)

SUBCOMMANDS["check"] = cmd_check


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return SUBCOMMANDS[argv[0]](argv[1:])  # type: ignore[operator]
        return cmd_profile(argv)
    except InputError as exc:
        if debug:
            traceback.print_exc()
        print(f"jpegai-profile: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("jpegai-profile: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
