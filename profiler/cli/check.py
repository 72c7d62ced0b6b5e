"""`jpegai-profile check SUBMISSION_DIR`: the pre-submission compliance verdict.

What it runs, so that a proponent gets a verdict on a CPU-only machine in reasonable time: **every rate
point and every test image** of the conditions (the rules are about all of them), **one** timed repeat
and no extra warm-up (the counted run is the warm-up), on every available device. Then it applies the
`[[rules]]` of the conditions to the report and prints one line per rule. The report (with the verdict)
is written to `--out` (default `reports/<codec-slug>/check/`, so a full profile's report is not overwritten).

`check --report report.json` applies the rules to an existing report without measuring anything.

`check SUBMISSION_DIR --bitstreams DIR [--decoded DIR] [--originals DIR|builtin] [--model-sha256 FILE]`
checks a delivery the way `verify` does (profiler/cli/verify.py: the submitted bitstreams decoded and
compared, the originals re-encoded, the delivery's rules applied), under check's conditions (one timed
repeat, no extra warm-up); the report goes to `reports/<codec-slug>/check/` unless `--out` says otherwise.

Exit status: 0 every mandatory rule passes; 1 a mandatory rule fails or could not be measured; 2 bad
input (a missing directory, a malformed manifest, config or rule).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from .. import derive
from ..errors import InputError
from .common import EXIT_FAILED, EXIT_OK, ArgParser, apply_overrides, console, devices

NAME = "check"
ALIASES: tuple[str, ...] = ()


def parser() -> ArgParser:
    p = ArgParser(prog="jpegai-profile check",
                  description="Pre-submission compliance: run what the rules need, print one line per rule.")
    p.add_argument("submission", type=Path, nargs="?", help="submission directory (with submission.toml)")
    p.add_argument("--config", type=Path, default=None, help="test conditions and rules (default: the shipped profile.toml)")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    p.add_argument("--report", type=Path, default=None, help="evaluate this report.json instead of measuring")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: reports/<codec-slug>/check/)")
    p.add_argument("--images", type=str, default=None, help="'builtin' or a directory of PNG files")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per image (default 1)")
    p.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                   help="where to run: cpu, cuda, or all available (default)")
    from .verify import add_delivery_options

    add_delivery_options(p, required=False)
    p.add_argument("--originals", type=str, default=None,
                   help="with --bitstreams: 'builtin' or a folder ORIGINALS/<stem>.png (as --images)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def run(args) -> int:
    with contextlib.ExitStack() as held:
        return _run(args, held)


def _run(args, held: contextlib.ExitStack) -> int:
    from rich.markup import escape

    from ..compliance import assess, rules_of, validate_rules
    from ..conditions import load_conditions
    from ..render import verdict as verdict_render

    cond = load_conditions(args.config)
    validate_rules(*rules_of(cond))            # a bad rule is bad input: before measuring anything
    out = console()
    err = console(stderr=True)

    if args.report is not None:
        from ..model.io import read_report

        if args.submission is not None:
            raise InputError("command line", "--report", "give a submission directory or --report, not both")
        report = read_report(args.report)
    else:
        if args.submission is None:
            raise InputError("command line", "submission", "missing: give a submission directory (or --report)")
        from ..images import check_images
        from ..outdir import prepare_out
        from ..runner import profile
        from ..submission import load_submission, slug
        from .verify import prepare_delivery, print_problems

        if args.bitstreams is None:
            for opt, value in (("--decoded", args.decoded), ("--model-sha256", args.model_sha256),
                               ("--originals", args.originals)):
                if value is not None:
                    raise InputError("command line", opt, "only with --bitstreams (a delivery to check)")
        elif args.images is not None and args.originals is not None:
            raise InputError("command line", "--originals", "give --originals or --images, not both")
        sub = load_submission(args.submission)
        # One timed repeat, no extra warm-up (the counted run is the warm-up), every image.
        cond = apply_overrides(cond, repeats=args.repeats or 1, warmup=1,
                               images=args.originals if args.originals is not None else args.images)
        out_dir = args.out or Path("reports") / slug(sub.codec) / "check"
        check_images(cond.images, cond.source)     # a bad picture set is bad input, before any worker
        rate_indices = [r.index for r in sub.rates]
        extra: dict = {}
        if args.bitstreams is not None:            # a delivery: checked and run the way `verify` does
            d = prepare_delivery(sub, cond, args.bitstreams, args.decoded, args.model_sha256)
            rate_indices = d["rate_indices"]
            extra = {"job_extra": d["jobs"], "verification": d["verification"]}
        out_lock = prepare_out(out_dir, sub.directory, sub.codec, explicit=args.out is not None, resume=False)
        if args.bitstreams is not None:
            print_problems(d["problems"])

        def progress(kind: str, info: dict) -> None:
            if kind == "rate":
                err.print(f"checking {escape(sub.codec)} @ {info['rate']:g} bpp …", highlight=False)

        held.enter_context(out_lock)       # until the report and tables are written
        report = profile(sub, cond, out_dir, rate_indices, devices(args.device), progress,
                         options={"check": True, "rates": [r.target_bpp for r in sub.rates if r.index in rate_indices]},
                         **extra)
    verdict = assess(report, cond)
    report = report.model_copy(update={"compliance": verdict})
    if args.report is None:
        from ..render import write_all

        written = write_all(report, out_dir)
        err.print("wrote " + ", ".join(escape(str(p)) for p in written), highlight=False)
    unfinished = None if derive.is_complete(report) else (
        f"the run did not finish (run.state {report.run.state}): planned rate points not measured: "
        + (", ".join(f"{t:g}" for t in derive.missing_rates(report)) or "none")
        + " bpp; the summary figures cover only the rate points measured")
    items = None
    if report.verification is not None and args.report is None:
        from .verify import item_lines

        items = item_lines(report)
    if args.json:
        data = json.loads(verdict_render.to_json(verdict))
        data.update({"complete": unfinished is None, "missing_rates": derive.missing_rates(report)})
        if items is not None:
            data["items"] = [i.model_dump(mode="json") for i in items]
            data["problems"] = [p.model_dump(mode="json") for p in report.verification.problems]
        print(json.dumps(data, indent=1))
    else:
        if unfinished:
            out.print(f"[yellow]incomplete report:[/] {escape(unfinished)}", soft_wrap=True)
        verdict_render.render(verdict, out)
    return EXIT_OK if verdict.passed else EXIT_FAILED
