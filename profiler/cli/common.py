"""What every subcommand shares: the argument parser that fails with one line, exit codes, consoles.

Each subcommand is one module of this package with `NAME`, `ALIASES`, `parser()` and `run(args) -> int`
(profiler/cli/__init__.py finds them in `COMMANDS`); no library module imports the CLI.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import InputError

EXIT_OK, EXIT_FAILED, EXIT_INPUT = 0, 1, 2


class ArgParser(argparse.ArgumentParser):
    """argparse that raises InputError (one line, exit 2) instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError("command line", None, message)


def devices(choice: str) -> list[str]:
    return ["cpu"] if choice == "cpu" else ["cuda"] if choice == "cuda" else ["cpu", "cuda"]


def console(stderr: bool = False):
    """A rich console; logs and CI are not terminals, so give tables room instead of 80 columns."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, soft_wrap=False) if stream.isatty() else Console(stderr=stderr, width=200)


def apply_overrides(cond, *, repeats: int | None = None, warmup: int | None = None, threads: int | None = None,
                    min_gpu_memory: bool = False, timeout: float | None = None, memory_limit: int | None = None,
                    images: str | None = None, quick: bool = False):
    """The test conditions with the command line's overrides; each bad value is one line naming the option."""
    import dataclasses
    from pathlib import Path

    from ..conditions import ImageSpec

    timing = cond.timing
    if repeats is not None:
        if repeats < 1:
            raise InputError("command line", "--repeats", f"must be at least 1, got {repeats}")
        timing = dataclasses.replace(timing, repeats=repeats)
    if warmup is not None:
        if warmup < 0:
            raise InputError("command line", "--warmup", f"must be 0 or more, got {warmup}")
        timing = dataclasses.replace(timing, warmup=warmup)
    if threads is not None:
        if threads < 1:
            raise InputError("command line", "--threads", f"must be at least 1, got {threads}")
        timing = dataclasses.replace(timing, threads=threads)
    if min_gpu_memory:
        timing = dataclasses.replace(timing, min_gpu_memory=True)
    worker = cond.worker
    if timeout is not None:
        if not timeout > 0 or timeout == float("inf"):
            raise InputError("command line", "--timeout", f"expected a positive number of seconds, got {timeout:g}")
        worker = dataclasses.replace(worker, timeout_s=timeout)
    if memory_limit is not None:
        if memory_limit < 1:
            raise InputError("command line", "--memory-limit", f"expected a positive number of MiB, got {memory_limit}")
        worker = dataclasses.replace(worker, memory_limit_mib=memory_limit)
    cond = dataclasses.replace(cond, worker=worker)
    spec = cond.images
    if images is not None and images != "builtin":
        if not Path(images).is_dir():
            raise InputError(images, "--images", "image directory not found")
        spec = ImageSpec(source=str(Path(images).resolve()), builtin=spec.builtin)
    if quick:
        timing = dataclasses.replace(timing, repeats=repeats or 1, warmup=1)
        spec = dataclasses.replace(spec, limit=1)
        if spec.source == "builtin" and images is None:
            # The smallest built-in photograph, with an odd width (300×451): quick and still a real case.
            spec = dataclasses.replace(spec, builtin=("chelsea",))
    return dataclasses.replace(cond, timing=timing, images=spec)
