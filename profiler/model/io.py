"""report.json on disk: read (1.x upgraded), validate with field paths, write atomically, the schema.

The JSON schema is generated from the types (`report_schema()`); the copy shipped in the package,
`profiler/report.schema.json`, is what external readers use, and a test keeps it equal to the generated one.
"""

from __future__ import annotations

import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from pydantic import ValidationError

from ..version import SCHEMA_VERSION
from ..errors import InputError
from .report import Report
from .upgrade import upgrade_1x

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "report.schema.json"


def report_schema() -> dict:
    """The JSON schema (draft 2020-12) of report.json, generated from `Report`."""
    schema = Report.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://jpegai-profile/report-{SCHEMA_VERSION}.schema.json",
            "x-schema-version": SCHEMA_VERSION, **schema}


@lru_cache(maxsize=1)
def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def _where(loc: tuple) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)


def errors_of(exc: ValidationError) -> list[str]:
    return [f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors()]


def parse(data: object, source: str = "report") -> Report:
    """A report dict (any readable schema version) → Report, or InputError naming the first bad field."""
    if not isinstance(data, dict):
        raise InputError(source, None, f"not a report (a JSON {type(data).__name__}, expected an object)")
    version = str(data.get("schema_version", ""))
    major = version.split(".")[0]
    if major == "1":
        try:
            data = upgrade_1x(data)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:   # too broken to upgrade
            raise InputError(source, None, f"not a readable 1.x report ({type(exc).__name__}: {exc})") from None
    elif major != SCHEMA_VERSION.split(".")[0]:
        raise InputError(source, "schema_version", f"report schema {version!r} is not readable by this version "
                                                   f"(expects {SCHEMA_VERSION} or 1.x)")
    try:
        return Report.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(source, _where(first["loc"])[2:] or None, first["msg"]) from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:   # a 1.x report too broken to upgrade
        raise InputError(source, None, f"not a readable report ({type(exc).__name__}: {exc})") from None


def validate(data: object) -> list[str]:
    """Every place `data` departs from the schema, as 'path: problem' lines (empty when valid)."""
    if isinstance(data, dict) and str(data.get("schema_version", "")).startswith("1."):
        try:
            data = upgrade_1x(data)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            return [f"$: not a readable 1.x report ({type(exc).__name__}: {exc})"]
    try:
        Report.model_validate(data)
    except ValidationError as exc:
        return errors_of(exc)
    return []


def read_report(path: Path | str) -> Report:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, None, f"not a readable report ({type(exc).__name__}: {exc})") from None
    return parse(data, str(path))


def to_json(report: Report) -> str:
    return json.dumps(report.model_dump(mode="json"), indent=1, allow_nan=True)


def write_report(report: Report, path: Path) -> None:
    """Write atomically (a temporary file in the same folder, then a rename), readable like the other files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".report-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(to_json(report))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
