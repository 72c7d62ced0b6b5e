"""`jpegai-profile check SUBMISSION_DIR`: the pre-submission compliance verdict.

What it runs, so that a proponent gets a verdict on a CPU-only machine in reasonable time: **every rate
point and every test image** of the conditions (the rules are about all of them), **one** timed repeat
and no extra warm-up (the counted run is the warm-up), on every available device. Then it applies the
`[[rules]]` of the conditions to the report and prints one line per rule. The report (with the verdict)
is written to `--out` (default `reports/<codec>/check/`, so a full profile's report is not overwritten).

`check --report report.json` applies the rules to an existing report without measuring anything.

Exit status: 0 every mandatory rule passes; 1 a mandatory rule fails or could not be measured; 2 bad
input (a missing directory, a malformed manifest, config or rule).
"""

from __future__ import annotations

import sys
from pathlib import Path


def check_parser():
    from .cli import _Parser

    p = _Parser(prog="jpegai-profile check",
                description="Pre-submission compliance: run what the rules need, print one line per rule.")
    p.add_argument("submission", type=Path, nargs="?", help="submission directory (with submission.toml)")
    p.add_argument("--config", type=Path, default=None, help="test conditions and rules (default: profile.toml)")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    p.add_argument("--report", type=Path, default=None,
                   help="evaluate this report.json instead of measuring")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: reports/<codec>/check/)")
    p.add_argument("--images", type=str, default=None, help="'builtin' or a directory of PNG files")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per image (default 1)")
    p.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                   help="where to run: cpu, cuda, or all available (default)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _check_conditions(cond, args):
    """Conditions for a check run: one timed repeat, no extra warm-up, all images."""
    from .cli import _apply_overrides

    args_for = type("A", (), {"repeats": args.repeats or 1, "warmup": 1, "threads": None,
                              "images": args.images, "quick": False})()
    return _apply_overrides(cond, args_for)


def cmd_check(argv: list[str]) -> int:
    from rich.console import Console

    from .cli import EXIT_FAILED, EXIT_OK, _devices
    from .compliance import assess, rules_of, validate_rules
    from .conditions import load_conditions
    from .errors import InputError
    from .render import verdict as verdict_render

    args = check_parser().parse_args(argv)
    cond = load_conditions(args.config)
    validate_rules(*rules_of(cond))            # a bad rule is bad input: before measuring anything
    out = Console(width=200, soft_wrap=True) if not sys.stdout.isatty() else Console(soft_wrap=True)
    err = Console(stderr=True)

    if args.report is not None:
        from .report import read_report

        if args.submission is not None:
            raise InputError("command line", "--report", "give a submission directory or --report, not both")
        report = read_report(args.report)
    else:
        if args.submission is None:
            raise InputError("command line", "submission", "missing: give a submission directory (or --report)")
        from .render import write_all
        from .runner import profile
        from .submission import load_submission

        sub = load_submission(args.submission)
        cond = _check_conditions(cond, args)
        out_dir = args.out or Path("reports") / sub.codec / "check"
        indices = [r.index for r in sub.rates]

        def progress(kind: str, info: dict) -> None:
            if kind == "rate":
                err.print(f"checking {sub.codec} @ {info['rate']:g} bpp …", highlight=False)

        report = profile(sub, cond, out_dir, indices, _devices(args.device), progress,
                         options={"check": True, "rates": [r.target_bpp for r in sub.rates]})
    verdict = assess(report, cond)
    report.compliance = verdict.to_dict()
    if args.report is None:
        written = write_all(report, out_dir)
        err.print("wrote " + ", ".join(str(p) for p in written), highlight=False)
    if args.json:
        print(verdict_render.to_json(report.compliance))
    else:
        verdict_render.render(report.compliance, out)
    return EXIT_OK if verdict.passed else EXIT_FAILED
