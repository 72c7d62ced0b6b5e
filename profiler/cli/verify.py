"""`jpegai-profile verify SUBMISSION_DIR --bitstreams DIR`: tie the figures to what the proponent delivered.

For every original × target rate of the delivery (layout: profiler/delivery.py, submissions/README.md)
the submission's own worker decodes the submitted bitstream (counted: decoder kMAC/px of that
bitstream; warmed up and timed; memory peaks), compares its picture with the submitted decoded picture
and with the original, and re-encodes the original (counted, timed) to compare with the submitted
bytes. Bad input in the delivery is one line naming the file, recorded for its item; the other items
are still measured. The rules `bitstreams.complete`, `decoded.match`, `encoder.match`, `model.match`
and the rate rules are applied to the submitted set. The report goes to `--out` (default
`reports/<codec-slug>/verify/`).

Exit status: 0 every mandatory rule passes; 1 one fails or could not be measured; 2 bad input.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from ..errors import InputError
from .common import EXIT_FAILED, EXIT_OK, ArgParser, apply_overrides, console, devices

NAME = "verify"
ALIASES: tuple[str, ...] = ()


def parser() -> ArgParser:
    p = ArgParser(prog="jpegai-profile verify",
                  description="Verify a delivery: bitstreams and decoded pictures against the submission.")
    p.add_argument("submission", type=Path, help="submission directory (with submission.toml)")
    add_delivery_options(p, required=True)
    p.add_argument("--originals", type=str, default="builtin", help="'builtin' or a folder ORIGINALS/<stem>.png")
    p.add_argument("--config", type=Path, default=None, help="test conditions and rules (default: the shipped profile.toml)")
    p.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per item (overrides profile.toml)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: reports/<codec-slug>/verify/)")
    p.add_argument("--json", action="store_true", help="print the verdict and the failed items as JSON")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def run(args) -> int:
    with contextlib.ExitStack() as held:
        return _run(args, held)


def add_delivery_options(p: ArgParser, required: bool) -> None:
    """The delivery's options, shared by `verify` and `check --bitstreams`."""
    p.add_argument("--bitstreams", type=Path, required=required, default=None,
                   help="BITSTREAMS/<target>/<stem>.bin (a delivery: verify it)")
    p.add_argument("--decoded", type=Path, default=None,
                   help="DECODED/<target>/<stem>.png (default: beside the bitstreams)")
    p.add_argument("--model-sha256", type=Path, default=None, metavar="FILE",
                   help="sha256sum listing of the submission's files, from the earlier delivery")


def prepare_delivery(sub, cond, bitstreams: Path, decoded: Path | None, model_sha256: Path | None) -> dict:
    """Everything read and checked in the parent before any worker runs: the rate folders matched to the
    submission's rates, the delivery's problems (one line each, naming the file), the model's hashes.

    Returns {"rate_indices", "jobs" (rate index → the worker job's delivery), "verification" (the report's
    section), "problems"}."""
    from ..delivery import check_model, scan
    from ..images import check_images

    originals = check_images(cond.images, cond.source)
    targets = [r.target_bpp for r in sub.rates]
    folders, dec, problems = scan(bitstreams, decoded, originals, targets)
    model = check_model(sub.directory, model_sha256) if model_sha256 is not None else None
    rate_indices = [r.index for r in sub.rates if r.target_bpp in folders]
    jobs = {r.index: {"delivery": {"bitstreams": str(folders[r.target_bpp].resolve()),
                                   "decoded": str(dec[r.target_bpp].resolve()) if dec[r.target_bpp] else None}}
            for r in sub.rates if r.target_bpp in folders}
    verification = {"bitstreams": str(bitstreams.resolve()),
                    "decoded": str(decoded.resolve()) if decoded else None,
                    "originals": cond.images.source, "originals_names": originals,
                    "rate_folders": {f"{t:g}": str(f) for t, f in folders.items()},
                    "problems": problems, "model": model}
    return {"rate_indices": rate_indices, "jobs": jobs, "verification": verification, "problems": problems}


def print_problems(problems: list[dict]) -> None:
    for p in problems:
        print(f"jpegai-profile: {p['file']}: {p['message']}", file=sys.stderr)


def item_lines(report) -> list:
    """The verification items, and one stderr line per problem of an item (naming its file)."""
    items = [i for r in report.rates for i in r.verification]
    for i in items:
        for line in i.problems:
            print(f"jpegai-profile: {i.original} at {i.target_bpp:g} bpp: {line}", file=sys.stderr)
    return items


def _run(args, held: contextlib.ExitStack) -> int:
    from rich.markup import escape

    from ..compliance import evaluate, rules_of, validate_rules
    from ..conditions import load_conditions
    from ..outdir import prepare_out
    from ..render import verdict as verdict_render
    from ..render import write_all
    from ..runner import profile
    from ..submission import load_submission, slug

    sub = load_submission(args.submission)
    cond = load_conditions(args.config)
    validate_rules(*rules_of(cond))
    cond = apply_overrides(cond, repeats=args.repeats, images=args.originals)
    d = prepare_delivery(sub, cond, args.bitstreams, args.decoded, args.model_sha256)
    out_dir = args.out or Path("reports") / slug(sub.codec) / "verify"
    out_lock = prepare_out(out_dir, sub.directory, sub.codec,
                           explicit=args.out is not None and not getattr(args, "out_is_default", False), resume=False)
    err = console(stderr=True)
    out = console()
    print_problems(d["problems"])
    rate_indices = d["rate_indices"]

    def progress(kind: str, info: dict) -> None:
        if kind == "rate":
            err.print(f"verifying {escape(sub.codec)} @ {info['rate']:g} bpp …", highlight=False)

    held.enter_context(out_lock)
    client = getattr(args, "client", None)     # batch --jobs/--scheduler: a Dask cluster's (profiler/cluster.py)
    if client is not None:
        from functools import partial

        from ..cluster import profile_on

        profile = partial(profile_on, client)
    report = profile(sub, cond, out_dir, rate_indices, devices(args.device), progress,
                     options={"check": True, "rates": [r.target_bpp for r in sub.rates if r.index in rate_indices]},
                     job_extra=d["jobs"], verification=d["verification"])
    report = evaluate(report, cond)
    written = write_all(report, out_dir)
    err.print("wrote " + ", ".join(escape(str(p)) for p in written), highlight=False)
    items = item_lines(report)
    verdict = report.compliance
    if args.json:
        data = json.loads(verdict_render.to_json(verdict))
        data["items"] = [i.model_dump(mode="json") for i in items]
        data["problems"] = d["problems"]
        print(json.dumps(data, indent=1))
    else:
        verdict_render.render(verdict, out)
    return EXIT_OK if verdict.passed else EXIT_FAILED
