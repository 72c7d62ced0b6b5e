"""Command line: finds the subcommand, parses its arguments, maps errors to exit codes.

Exit status: 0 everything measured; 1 a rate point failed (or, for `check`, a mandatory rule failed);
2 bad input (a missing directory, a malformed manifest or config, a bad option value). No measuring
happens here: each subcommand (one module: `NAME`, `ALIASES`, `parser()`, `run(args)`) calls the rooms.
"""

from __future__ import annotations

import sys
import traceback
from importlib import import_module

from ..errors import InputError
from .common import EXIT_FAILED, EXIT_INPUT, EXIT_OK  # noqa: F401  (re-exported for callers)

# First argument → subcommand module; `profile` runs when the first argument names none of them.
# `--zoo ARCH` is the documented spelling of `zoo ARCH` (each module lists its ALIASES; a test checks this table).
COMMANDS = {"check": "check", "verify": "verify", "aggregate": "aggregate", "zoo": "zoo", "--zoo": "zoo",
            "anchors": "anchors", "batch": "batch"}
DEFAULT = "profile"


def _command(argv: list[str]):
    if argv and argv[0] in COMMANDS:
        return import_module(f"{__name__}.{COMMANDS[argv[0]]}"), argv[1:]
    return import_module(f"{__name__}.{DEFAULT}"), argv


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        mod, rest = _command(argv)
        return mod.run(mod.parser().parse_args(rest))
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
