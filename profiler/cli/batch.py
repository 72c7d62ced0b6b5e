"""`jpegai-profile batch SUBMISSIONS_DIR… [--out reports/] [--jobs N] [--scheduler ADDRESS] [--verify DIR]`.

Every proponent of a call in one command: each SUBMISSIONS_DIR is a submission (it holds submission.toml)
or a folder whose subfolders are submissions. Each is profiled (or, with `--verify DELIVERIES`, its
delivery `DELIVERIES/<codec-slug>/` verified, with `DELIVERIES/<codec-slug>.sha256` as its
`--model-sha256` where that file exists) into one reports tree, `OUT/<codec-slug>/` (`…/verify/`), and
the reports this batch wrote are aggregated into `OUT/aggregate/` (as `jpegai-profile aggregate`).

Every manifest is read and checked before anything runs (bad input: one line naming the file, exit 2).
Submissions run one after another, each as `jpegai-profile` runs it (its own `--jobs` default); with
`--jobs N` (N > 1) their rate points run on a Dask `LocalCluster` of N worker processes on this machine,
with `--scheduler ADDRESS` on an existing Dask cluster (profiler/cluster.py), one cluster for the whole
batch. A submission whose run stops on bad input
(its delivery, its output folder) is that one line and the batch goes on with the others.

Exit status: 0 every submission measured (verified: every mandatory rule passes); 1 one failed; 2 bad
input in one of them.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from ..errors import InputError
from .common import EXIT_FAILED, EXIT_INPUT, EXIT_OK, ArgParser

NAME = "batch"
ALIASES: tuple[str, ...] = ()

# Options of a profile that `verify` has too (the others do not apply to a delivery and are refused).
VERIFY_OPTIONS = {"config", "device", "repeats", "debug"}


def parser() -> ArgParser:
    from .profile import add_profile_options

    p = ArgParser(prog="jpegai-profile batch",
                  description="Profile (or verify) every submission into one reports tree and aggregate it.")
    p.add_argument("dirs", nargs="+", type=Path, metavar="SUBMISSIONS_DIR",
                   help="a submission directory, or a folder of submission directories")
    p.add_argument("--out", type=Path, default=Path("reports"), help="the reports tree (default: reports/)")
    p.add_argument("--scheduler", type=str, default=None, metavar="ADDRESS",
                   help="run the rate points on this Dask cluster (e.g. tcp://head:8786); needs the dask extra")
    p.add_argument("--verify", type=Path, default=None, metavar="DELIVERIES",
                   help="verify DELIVERIES/<codec-slug>/ (a delivery) for each submission instead of profiling")
    p.add_argument("--originals", type=str, default=None,
                   help="with --verify: 'builtin' or a folder ORIGINALS/<stem>.png")
    add_profile_options(p)     # its --jobs N: here a local Dask cluster of N worker processes
    for action in p._actions:
        if action.dest == "jobs":
            action.help = ("N > 1: a local Dask cluster of N worker processes runs the rate points of every "
                           "submission (default: each submission as `jpegai-profile` runs it)")
    return p


def find_submissions(dirs: list[Path]) -> list[Path]:
    """The submission directories named or held (one level down) by `dirs`, in order, each once."""
    found: list[Path] = []
    for d in dirs:
        if (d / "submission.toml").is_file():
            found.append(d)
        elif d.is_dir():
            subs = sorted(c for c in d.iterdir() if (c / "submission.toml").is_file())
            if not subs:
                raise InputError(d, None, "no submission.toml in this folder or in its subfolders")
            found += subs
        else:
            raise InputError(d, None, "no such submission folder")
    return list(dict.fromkeys(p.resolve() for p in found))


def _uses_cluster(args) -> bool:
    return args.scheduler is not None or (args.jobs is not None and args.jobs > 1)


def _argv_of(args, names: set[str] | None = None) -> list[str]:
    """The profile options given to `batch`, as a profile's (or verify's: `names`) own command line
    (`--jobs` stays the batch's where it makes a cluster)."""
    from .profile import add_profile_options

    probe = ArgParser(add_help=False)
    add_profile_options(probe)
    argv = []
    for action in probe._actions:
        value = getattr(args, action.dest, None)
        if value is None or value is False or value == action.default or (action.dest == "jobs" and
                                                                        (_uses_cluster(args) or names is not None)):
            continue
        if names is not None and action.dest not in names:
            raise InputError("command line", action.option_strings[0], "does not apply with --verify")
        flag = action.option_strings[0]
        argv += [flag] if value is True else [flag, str(value)]
    return argv


def plan(args) -> list[tuple[str, argparse.Namespace, Path]]:
    """(codec, the namespace of its profile or verify command, its report.json) per submission; every
    manifest read and checked, the codec slugs distinct, each delivery there: before anything runs."""
    from ..submission import load_submission, slug
    from . import profile, verify

    if args.jobs is not None and args.jobs < 1:
        raise InputError("command line", "--jobs", f"must be at least 1, got {args.jobs}")
    if args.originals is not None and args.verify is None:
        raise InputError("command line", "--originals", "applies with --verify only")
    subs = [load_submission(d) for d in find_submissions(args.dirs)]
    seen: dict[str, Path] = {}
    out = []
    for sub in subs:
        name = slug(sub.codec)
        if name in seen:
            raise InputError(sub.directory / "submission.toml", "submission.codec",
                             f"{sub.codec!r} has the same report folder {name}/ as {seen[name]}")
        seen[name] = sub.directory
        if args.verify is None:
            ns = profile.parser().parse_args([str(sub.directory), "--out", str(args.out / name), *_argv_of(args)])
            report = args.out / name / "report.json"
        else:
            delivery = args.verify / name
            if not delivery.is_dir():
                raise InputError(delivery, "--verify", f"no delivery for {sub.codec!r} (expected DELIVERIES/{name}/)")
            argv = [str(sub.directory), "--bitstreams", str(delivery), "--out", str(args.out / name / "verify")]
            sha = args.verify / f"{name}.sha256"
            if sha.is_file():
                argv += ["--model-sha256", str(sha)]
            if args.originals is not None:
                argv += ["--originals", args.originals]
            ns = verify.parser().parse_args(argv + _argv_of(args, VERIFY_OPTIONS))
            report = args.out / name / "verify" / "report.json"
        ns.out_is_default = True       # OUT/<slug>/ is the batch's choice: another codec's report there is refused
        out.append((sub.codec, ns, report))
    return out


@contextlib.contextmanager
def _executor(args):
    """None (serial), or a Dask client for the whole batch (--jobs N > 1, --scheduler)."""
    if not _uses_cluster(args):
        yield None
        return
    from ..cluster import connect

    jobs = args.jobs or 1
    if args.scheduler is None and not _can_overlap(args):
        print("jpegai-profile batch: this machine has no core beside its timing slots: --jobs 1 "
              "(untimed work would share the timed cores)", file=sys.stderr)
        jobs = 1
    with connect(scheduler=args.scheduler, jobs=jobs) as client:
        yield client


def _can_overlap(args) -> bool:
    """Whether this machine's timing slots (under --config) leave a core for untimed work beside them."""
    from ..conditions import load_conditions
    from ..runner import default_pool

    return default_pool(load_conditions(args.config)).can_overlap


def run(args) -> int:
    from . import aggregate, profile, verify

    runs = plan(args)
    command = verify if args.verify is not None else profile
    codes = []
    with _executor(args) as client:
        for codec, ns, _ in runs:
            ns.client = client
            print(f"jpegai-profile batch: {codec} ({len(codes) + 1}/{len(runs)})", file=sys.stderr)
            try:
                codes.append(command.run(ns))
            except InputError as exc:       # this submission's bad input: said, and the batch goes on
                print(f"jpegai-profile: error: {exc}", file=sys.stderr)
                codes.append(EXIT_INPUT)
    # the reports this batch wrote (not one left from an earlier run of a submission that stopped on bad input)
    written = [str(r) for (_, _, r), code in zip(runs, codes) if code != EXIT_INPUT and r.is_file()]
    if written:
        aggregate.run(argparse.Namespace(dirs=written, out=args.out / "aggregate", complete_only=False))
    return max(codes, default=EXIT_OK)
