"""`jpegai-profile anchors [--images …] [--out reports/anchors/] [--only jpeg,jpeg2000,hevc]`, and
`jpegai-profile anchors --bitstreams DIR --name NAME --substitute-for ANCHOR [--decoded DIR] [--originals …]`.

Profiles the bundled anchors (submissions/jpeg, jpeg2000, hevc: open programs through the command adapter,
each a *substitute* for the test conditions' anchor) into one report each, `OUT/<name>/report.json`, in
the report schema, marked as an anchor's (`Report.anchor`; complexity *not applicable*). They are reused by
every comparison: `jpegai-profile SUBMISSION --anchors OUT` adds the submission's BD-rates against them.
A program of your own (HM, VTM, Kakadu) wrapped as a command submission enters with
`--submission DIR --substitute-for NAME`.

An official anchor's delivery (its bitstreams, and decoded pictures where delivered, in the evaluator's
layout of `verify`) enters with `--bitstreams DIR --name NAME --substitute-for ANCHOR`: no program is run,
the rates come from the bitstreams' sizes and the metrics from the decoded pictures against the originals
(profiler/anchor_delivery.py); the report is `OUT/<name>/report.json`, reused by `--anchors` as any other.

Timing is not what an anchor is for: one warm-up and one timed run per picture (override with --repeats),
and no counted resolutions.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .common import EXIT_FAILED, EXIT_OK, ArgParser, apply_overrides, console

NAME = "anchors"
ALIASES: tuple[str, ...] = ()

# Bundled anchor directory → what it stands in for, its programs and chroma format.
BUNDLED = {
    "jpeg": {"substitute_for": "JPEG XT reference software (JPEG)", "program": "libjpeg-turbo 2.1 cjpeg/djpeg",
             "chroma": "4:2:0", "note": "baseline JPEG does not reach 0.03 – 0.12 bpp: rate points from 0.25 bpp"},
    "jpeg2000": {"substitute_for": "Kakadu (JPEG 2000)", "program": "OpenJPEG 2.5 opj_compress/opj_decompress",
                 "chroma": "4:4:4 (RGB→YCC, irreversible 9/7)"},
    "hevc": {"substitute_for": "HM 16.20 (HEVC intra)", "program": "x265 3.5 + ffmpeg 5.1",
             "chroma": "4:4:4 (Y'CbCr BT.709 full range, 8 bits, Main 4:4:4 8)"},
}
COMPLEXITY = "an anchor's report: compression figures only, its complexity is not part of the comparison"


def bundled_dir() -> Path:
    """The repository's submissions/ folder (beside the package), else ./submissions."""
    here = Path(__file__).resolve().parents[2] / "submissions"
    return here if here.is_dir() else Path("submissions")


def parser() -> ArgParser:
    p = ArgParser(prog="jpegai-profile anchors",
                  description="Profile the anchor codecs (substitutes for the test conditions' anchors) once, "
                              "for BD-rates of any submission against them.")
    p.add_argument("--out", type=Path, default=Path("reports") / "anchors", help="output folder (default: reports/anchors/)")
    p.add_argument("--only", type=str, default=None, help=f"comma-separated subset of {', '.join(BUNDLED)}")
    p.add_argument("--submission", type=Path, default=None, metavar="DIR",
                   help="an anchor program of your own (a command submission) instead of the bundled ones")
    p.add_argument("--bitstreams", type=Path, default=None, metavar="DIR",
                   help="an anchor delivery, DIR/<target>/<stem>.bin (and .png): read it, run no program")
    p.add_argument("--decoded", type=Path, default=None, metavar="DIR",
                   help="with --bitstreams: DIR/<target>/<stem>.png, the delivered decoded pictures "
                        "(default: beside the bitstreams)")
    p.add_argument("--name", type=str, default=None,
                   help="with --bitstreams: the anchor's name (its report's codec, and its folder under --out)")
    p.add_argument("--substitute-for", type=str, default=None, metavar="NAME",
                   help="with --submission or --bitstreams: the test conditions' anchor it is (or stands in for)")
    p.add_argument("--config", type=Path, default=None, help="test conditions (default: the shipped profile.toml)")
    p.add_argument("--images", "--originals", type=str, default=None, dest="images",
                   help="'builtin' or a directory of PNG files (with --bitstreams: the originals, ORIGINALS/<stem>.png)")
    p.add_argument("--rates", type=str, default=None, help="only these target rates, e.g. 0.25,0.5")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per image (default 1)")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="wall-clock limit per rate point's worker")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="rate points at once (default: timing.slots_per_host + 1 where a core is left beside them, "
                        "one per slot where the slots take every core)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def plan(args) -> list[tuple[Path, dict]]:
    """(submission directory, anchor info) of each anchor to profile."""
    if args.submission is not None:
        if not args.substitute_for:
            raise InputError("command line", "--substitute-for", "is needed with --submission (which anchor it is)")
        return [(args.submission, {"substitute_for": args.substitute_for, "program": str(args.submission)})]
    if args.substitute_for:
        raise InputError("command line", "--substitute-for", "only goes with --submission or --bitstreams")
    names = list(BUNDLED)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        bad = [n for n in names if n not in BUNDLED]
        if bad or not names:
            what = ", ".join(bad) if bad else repr(args.only)
            raise InputError("command line", "--only", f"unknown anchor {what} (known: {', '.join(BUNDLED)})")
    return [(bundled_dir() / n, BUNDLED[n]) for n in names]


def mark_anchor(report, info: dict):
    """The report as an anchor's: `anchor` set, complexity not applicable (a copy; the input is unchanged)."""
    from ..model.report import AnchorInfo, NotMeasured, NotMeasuredCode

    nm = {**report.not_measured, "complexity": NotMeasured(code=NotMeasuredCode.NOT_APPLICABLE, reason=COMPLEXITY)}
    return report.model_copy(update={"anchor": AnchorInfo(**info), "not_measured": nm})


def check_delivery_options(args) -> None:
    """--bitstreams needs --name and --substitute-for, and goes with none of the program options."""
    if args.bitstreams is None:
        for opt, v in (("--decoded", args.decoded), ("--name", args.name)):
            if v is not None:
                raise InputError("command line", opt, "only goes with --bitstreams")
        return
    for opt, v in (("--submission", args.submission), ("--only", args.only)):
        if v is not None:
            raise InputError("command line", opt, "does not go with --bitstreams (a delivery runs no program)")
    if not args.name or not args.name.strip():
        raise InputError("command line", "--name", "is needed with --bitstreams (the anchor's name)")
    if not args.substitute_for:
        raise InputError("command line", "--substitute-for", "is needed with --bitstreams (which anchor it is)")


def run_delivery(args) -> int:
    """`--bitstreams`: the delivery read into one anchor report, no program run."""
    from rich.markup import escape

    from ..anchor_delivery import delivery_report
    from ..conditions import load_conditions
    from ..images import check_images
    from ..outdir import prepare_out
    from ..render import write_all
    from ..submission import slug
    from .profile import _rates

    cond = apply_overrides(load_conditions(args.config), images=args.images)
    check_images(cond.images, cond.source)
    rates = _rates(args.rates) if args.rates else None
    for opt, folder in (("--bitstreams", args.bitstreams), ("--decoded", args.decoded)):
        if folder is not None and not folder.is_dir():       # before --out is created
            raise InputError(folder, opt, "folder not found")
    out_dir = args.out / slug(args.name)
    out = console()
    with prepare_out(out_dir, args.bitstreams, args.name, explicit=True, resume=False):
        report = delivery_report(args.bitstreams, args.decoded, cond, args.name.strip(), args.substitute_for,
                                 rates=rates)
        write_all(report, out_dir)
    out.print(f"anchor {escape(report.submission.codec)} ({escape(args.substitute_for)}), from the delivery "
              f"{escape(str(args.bitstreams))}: {len(report.rates)} rate points, no program run", highlight=False)
    for r in report.rates:
        mean = sum(p.bpp for p in r.images) / max(1, len(r.images))
        decoded = sum(1 for p in r.images if p.quality)
        out.print(f"  {r.target_bpp:g} bpp: mean {mean:.4f} bpp, decoded pictures {decoded}/{len(r.images)}",
                  highlight=False)
    out.print(f"wrote {escape(str(out_dir / 'report.json'))}", highlight=False)
    return EXIT_OK


def run(args) -> int:
    import dataclasses

    from rich.markup import escape

    from ..conditions import load_conditions
    from .profile import jobs_for
    from ..images import check_images
    from ..outdir import prepare_out
    from ..render import write_all
    from ..runner import profile
    from ..submission import load_submission, slug
    from .profile import select_rates

    check_delivery_options(args)
    if args.bitstreams is not None:
        return run_delivery(args)
    todo = plan(args)
    cond = apply_overrides(load_conditions(args.config), repeats=args.repeats, warmup=1, images=args.images,
                           timeout=args.timeout)
    # No counted resolutions: an anchor's complexity is not applicable (and a program codec would code them).
    cond = dataclasses.replace(cond, counting=dataclasses.replace(cond.counting, resolutions=()))
    check_images(cond.images, cond.source)
    out = console()
    failed = False
    for directory, info in todo:
        sub = load_submission(directory)
        rate_indices = select_rates(sub, args.rates, False) if args.rates else [r.index for r in sub.rates]
        out_dir = args.out / slug(directory.name if args.submission is None else sub.codec)
        with prepare_out(out_dir, sub.directory, sub.codec, explicit=True, resume=False):
            out.print(f"anchor {escape(sub.codec)} ({escape(info['substitute_for'])} substitute): "
                      f"{len(rate_indices)} rate points", highlight=False)
            jobs = jobs_for(args, cond, len(rate_indices))
            report = profile(sub, cond, out_dir, rate_indices, ["cpu"], jobs=jobs,
                             options={"jobs": jobs, "rates": [r.target_bpp for r in sub.rates if r.index in rate_indices]})
            report = mark_anchor(report, info)
            write_all(report, out_dir)
        for r in report.rates:
            if not r.ok:
                failed = True
                out.print(f"[red]rate {r.target_bpp:g} failed[/red]: {escape((r.error.message if r.error else '').splitlines()[0] if r.error and r.error.message else 'unknown')}")
                continue
            over = [p.name for p in r.images if p.bpp > r.target_bpp * (1 + 1e-9)]
            mean = sum(p.bpp for p in r.images) / max(1, len(r.images))
            out.print(f"  {r.target_bpp:g} bpp: mean {mean:.4f} bpp" +
                      (f", [red]over the target[/red] on {escape(', '.join(over))}" if over else ", at or below on every picture"),
                      highlight=False)
        out.print(f"wrote {escape(str(out_dir / 'report.json'))}", highlight=False)
    return EXIT_FAILED if failed else EXIT_OK
