"""Typed access to parsed TOML tables, so every validation error names the file and the field."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

from .errors import InputError

_MISSING = object()

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "an array", dict: "a table"}


def read_toml(path: Path) -> dict:
    """Parse a TOML file; a missing or malformed file is an InputError naming it."""
    if not path.is_file():
        raise InputError(path, None, "file not found")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(path, None, f"not valid TOML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, None, f"cannot be read ({exc})") from None


def get(table: dict, key: str, kind: type, file: Path, field: str, default: Any = _MISSING) -> Any:
    """`table[key]` checked to be of `kind`; `field` is the dotted name shown to the user."""
    if key not in table:
        if default is _MISSING:
            raise InputError(file, field, f"missing (expected {_TYPE_NAMES.get(kind, kind.__name__)})")
        return default
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is int and isinstance(value, bool):
        raise InputError(file, field, f"expected {_TYPE_NAMES[int]}, got {value!r}")
    if not isinstance(value, kind):
        raise InputError(file, field, f"expected {_TYPE_NAMES.get(kind, kind.__name__)}, "
                                      f"got {type(value).__name__} {value!r}")
    if kind is float:
        finite(value, file, field)
    return value


def finite(value: Any, file: Path, field: str) -> Any:
    """A number read from TOML must be finite: TOML has `nan` and `inf`, strict JSON (the report) has not,
    and `timeout_s = nan` would silently disable a limit."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(file, field, f"must be a finite number, got {value!r}")
    return value


def number(value: Any, file: Path, field: str) -> float:
    """An element of a TOML array that must be a finite number (int or float, not bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(file, field, f"expected a number, got {value!r}")
    return float(finite(value, file, field))


def refuse_unknown(table: dict, allowed: set[str] | frozenset[str], file: Path, prefix: str) -> None:
    """Refuse keys outside `allowed`: a typo (`repeets = 3`) would otherwise be silently ignored."""
    unknown = sorted(set(table) - set(allowed), key=str)
    if unknown:
        raise InputError(file, f"{prefix}{unknown[0]}",
                         f"unknown key (expected one of {', '.join(sorted(allowed))})")


def positive(value: float | int, file: Path, field: str) -> float | int:
    if value <= 0:
        raise InputError(file, field, f"must be positive, got {value!r}")
    return value


def non_negative(value: float | int, file: Path, field: str) -> float | int:
    if value < 0:
        raise InputError(file, field, f"must be zero or positive, got {value!r}")
    return value
