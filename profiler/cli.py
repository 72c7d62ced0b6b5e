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
    p.add_argument("--quick", action="store_true",
                   help="smoke run: one rate point, one image, one timed repeat")
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
    from .render import console as console_render
    from .render import write_all
    from .runner import profile
    from .submission import load_submission

    args = profile_parser().parse_args(argv)
    sub = load_submission(args.submission)
    cond = _apply_overrides(load_conditions(args.config), args)
    rate_indices = _select_rates(sub, args)
    out_dir = args.out or Path("reports") / sub.codec
    devices = _devices(args.device)
    # Logs and CI are not terminals: give the standard table room instead of rich's 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=200)

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

        report = profile(sub, cond, out_dir, rate_indices, devices, progress,
                         options={"quick": args.quick, "rates": [sub.rates[i].target_bpp for i in range(len(sub.rates))
                                                                 if sub.rates[i].index in rate_indices]})
    report.compliance = evaluate(report, cond)
    console_render.render(report, console)
    written = write_all(report, out_dir)
    console.print("wrote " + ", ".join(str(p) for p in written))
    return EXIT_OK if all(r.ok for r in report.rates) else EXIT_FAILED


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
