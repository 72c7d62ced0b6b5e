"""`jpegai-profile zoo ARCH [--quality Q[,Q…]] [--metric M] [--weights FILE] [profile options]`.

Also spelled `jpegai-profile --zoo ARCH …` (the documented one-liner). Writes the manifest it stands
for into `<out>/submission/` (profiler/zoo.py), then runs the ordinary profile on that directory.
"""

from __future__ import annotations

from pathlib import Path

from .common import ArgParser
from .profile import add_profile_options

NAME = "zoo"
ALIASES = ("--zoo",)


def parser() -> ArgParser:
    from ..adapters.compressai import ARCHITECTURES

    p = ArgParser(prog="jpegai-profile zoo", description="Profile a CompressAI model without writing a manifest.")
    p.add_argument("arch", metavar="ARCH", help="one of " + ", ".join(ARCHITECTURES))
    p.add_argument("--quality", type=str, default=None,
                   help="comma-separated quality levels (default: the architecture's JPEG AI mapping)")
    p.add_argument("--metric", choices=["mse", "ms-ssim"], default="mse")
    p.add_argument("--weights", type=Path, default=None,
                   help="a state dict (.safetensors, .pt, .pth, .pth.tar) for the single --quality given")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: reports/ARCH/)")
    add_profile_options(p)
    return p


def run(args) -> int:
    from ..zoo import write_submission
    from . import profile

    out = args.out or Path("reports") / args.arch
    directory = write_submission(out / "submission", args.arch, args.quality, args.metric, args.weights)
    profile_args = profile.parser().parse_args([str(directory), "--out", str(out), *_profile_argv(args)])
    # reports/ARCH/ chosen by default, not named: another codec's report there is refused, not replaced.
    profile_args.out_is_default = args.out is None
    return profile.run(profile_args)


def _profile_argv(args) -> list[str]:
    """The profile options given to `zoo`, as profile's own command line (one parser defines them)."""
    probe = ArgParser(add_help=False)
    add_profile_options(probe)
    argv = []
    for action in probe._actions:
        value = getattr(args, action.dest, None)
        if value is None or value is False or value == action.default:
            continue
        flag = action.option_strings[0]
        argv += [flag] if value is True else [flag, str(value)]
    return argv
