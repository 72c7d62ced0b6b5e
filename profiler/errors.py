"""Errors the CLI maps to exit codes.

`InputError` is bad input (a manifest, a config, a CLI value): exit status 2, one line naming the file
and the field. `SubmissionError` is an exception raised by the submission's own code: it is recorded in
the report as the submission's failure, never shown as a crash of the suite.
"""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input. `str()` is the one line the user sees: `FILE: FIELD: what was expected`."""

    def __init__(self, file: str | Path | None, field: str | None, message: str):
        self.file = str(file) if file is not None else None
        self.field = field
        self.message = message
        parts = [p for p in (self.file, field) if p]
        super().__init__(": ".join(parts + [message]))


class SubmissionError(Exception):
    """An exception raised inside the submission's code (build, encode, decode)."""

    def __init__(self, stage: str, message: str, traceback_text: str = ""):
        self.stage = stage
        self.traceback_text = traceback_text
        super().__init__(f"{stage}: {message}")
