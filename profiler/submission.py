"""submission.toml → `Submission` and its `RatePoint`s; entry-point import; safe weight loading.

The manifest format is a public contract, documented in submissions/README.md. Every validation
error is an `InputError` naming the manifest and the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import InputError, SubmissionError
from .tomlcheck import get, read_toml

MANIFEST = "submission.toml"

# Declared precision of a part: floating point (float16/32/64, bfloat16), integer with N bits (intN,
# uintN) or fixed point with N bits (fixedN). The N is mandatory (JPEG AI asks for it).
PRECISION_RE = re.compile(r"^(float(16|32|64)|bfloat16|u?int([1-9]|[1-5][0-9]|6[0-4])|fixed([1-9]|[1-5][0-9]|6[0-4]))$")

ENTRY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")

# Modules of the suite itself that a manifest may name as its entry (adapters for other libraries).
SUITE_ENTRY_PREFIX = "profiler.adapters."


@dataclass(frozen=True)
class RatePoint:
    """One rate point as handed to the submission's `build(rate, device)`."""

    index: int
    target_bpp: float
    weights: Path | None = None        # absolute path inside the submission directory, or None
    options: dict = field(default_factory=dict)
    # The weights file loaded by the suite (safetensors, or torch.load(weights_only=True)); None when
    # the manifest names no weights. Submissions should use this rather than open the file themselves.
    state_dict: dict | None = None


@dataclass(frozen=True)
class Submission:
    directory: Path
    manifest: Path
    proponent: str
    codec: str
    version: str
    entry: str                          # "module:callable"
    precision: dict[str, str]           # part → declared precision, as written
    rates: tuple[RatePoint, ...]

    @property
    def entry_module(self) -> str:
        return self.entry.split(":", 1)[0]

    @property
    def entry_callable(self) -> str:
        return self.entry.split(":", 1)[1]

    def rate(self, target_bpp: float) -> RatePoint:
        for r in self.rates:
            if abs(r.target_bpp - target_bpp) < 1e-9:
                return r
        raise KeyError(target_bpp)

    def to_dict(self) -> dict:
        return {
            "directory": str(self.directory),
            "proponent": self.proponent,
            "codec": self.codec,
            "version": self.version,
            "entry": self.entry,
            "precision": dict(self.precision),
            "rates": [{"index": r.index, "target_bpp": r.target_bpp,
                       "weights": str(r.weights.relative_to(self.directory)) if r.weights else None,
                       "options": r.options} for r in self.rates],
        }


def _inside(directory: Path, rel: str, manifest: Path, fieldname: str) -> Path:
    p = Path(rel)
    if p.is_absolute():
        raise InputError(manifest, fieldname, f"must be a path relative to the submission directory, got {rel!r}")
    resolved = (directory / p).resolve()
    if not resolved.is_relative_to(directory.resolve()):
        raise InputError(manifest, fieldname, f"path {rel!r} escapes the submission directory")
    return resolved


def load_submission(directory: Path | str) -> Submission:
    """Read and validate `directory/submission.toml`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(directory, None, "submission directory not found")
    directory = directory.resolve()
    manifest = directory / MANIFEST
    doc = read_toml(manifest)

    sub = get(doc, "submission", dict, manifest, "submission")
    proponent = get(sub, "proponent", str, manifest, "submission.proponent").strip()
    if not proponent:
        raise InputError(manifest, "submission.proponent", "must not be empty")
    codec = get(sub, "codec", str, manifest, "submission.codec").strip()
    if not codec:
        raise InputError(manifest, "submission.codec", "must not be empty")
    if not re.fullmatch(r"[A-Za-z0-9._+-]+", codec):
        raise InputError(manifest, "submission.codec", f"use letters, digits, '.', '_', '+', '-' only, got {codec!r}")
    version = get(sub, "version", str, manifest, "submission.version", "")
    entry = get(sub, "entry", str, manifest, "submission.entry")
    if not ENTRY_RE.match(entry):
        raise InputError(manifest, "submission.entry", f"expected 'module:callable', got {entry!r}")

    prec = get(doc, "precision", dict, manifest, "precision")
    precision = {}
    for part in ("encoder", "decoder"):
        value = get(prec, part, str, manifest, f"precision.{part}")
        if not PRECISION_RE.match(value):
            raise InputError(manifest, f"precision.{part}",
                             f"unknown precision {value!r} (expected float16/32/64, bfloat16, intN, uintN or fixedN)")
        precision[part] = value

    rates_doc = get(doc, "rates", list, manifest, "rates")
    if not rates_doc:
        raise InputError(manifest, "rates", "must have at least one [[rates]] table")
    rates = []
    seen = set()
    for i, r in enumerate(rates_doc):
        where = f"rates[{i}]"
        if not isinstance(r, dict):
            raise InputError(manifest, where, "expected a table ([[rates]])")
        target = get(r, "target_bpp", float, manifest, f"{where}.target_bpp")
        if not target > 0:
            raise InputError(manifest, f"{where}.target_bpp", f"must be positive, got {target!r}")
        if target in seen:
            raise InputError(manifest, f"{where}.target_bpp", f"duplicate target rate {target}")
        seen.add(target)
        weights = None
        if "weights" in r:
            rel = get(r, "weights", str, manifest, f"{where}.weights")
            weights = _inside(directory, rel, manifest, f"{where}.weights")
            if not weights.is_file():
                raise InputError(manifest, f"{where}.weights", f"file {rel!r} not found")
            if weights.suffix not in (".safetensors", ".pt", ".pth"):
                raise InputError(manifest, f"{where}.weights",
                                 f"expected a .safetensors, .pt or .pth file, got {rel!r}")
        options = get(r, "options", dict, manifest, f"{where}.options", {})
        unknown = set(r) - {"target_bpp", "weights", "options"}
        if unknown:
            raise InputError(manifest, f"{where}.{sorted(unknown)[0]}", "unknown field")
        rates.append(RatePoint(index=i, target_bpp=float(target), weights=weights, options=dict(options)))

    sub_obj = Submission(directory=directory, manifest=manifest, proponent=proponent, codec=codec,
                         version=version, entry=entry, precision=precision,
                         rates=tuple(sorted(rates, key=lambda x: x.target_bpp)))
    _check_entry_exists(sub_obj)
    return sub_obj


def _check_entry_exists(sub: Submission) -> None:
    """The entry module must be a file in the directory (or a suite adapter); checked without importing."""
    mod = sub.entry_module
    if mod.startswith(SUITE_ENTRY_PREFIX):
        if importlib.util.find_spec(mod.split(".")[0]) is None:
            raise InputError(sub.manifest, "submission.entry", f"module {mod!r} not found")
        return
    path = sub.directory.joinpath(*mod.split(".")).with_suffix(".py")
    pkg = sub.directory.joinpath(*mod.split("."), "__init__.py")
    if not path.is_file() and not pkg.is_file():
        raise InputError(sub.manifest, "submission.entry",
                         f"module {mod!r} not found in the submission directory (expected {path.name})")


def load_entry(sub: Submission) -> Callable[..., Any]:
    """Import the entry module and return its build callable.

    Import-time errors of the submission's own code are SubmissionErrors (reported as the
    submission's); a missing callable is an InputError naming the manifest field.
    """
    mod_name = sub.entry_module
    if not mod_name.startswith(SUITE_ENTRY_PREFIX):
        # Let the entry module import its siblings (model.py next to codec.py).
        if str(sub.directory) not in sys.path:
            sys.path.insert(0, str(sub.directory))
    try:
        module = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        if exc.name == mod_name:
            raise InputError(sub.manifest, "submission.entry", f"module {mod_name!r} not found") from None
        raise SubmissionError("import", f"{type(exc).__name__}: {exc}", traceback.format_exc()) from None
    except Exception as exc:  # the submission's own code failed while importing
        raise SubmissionError("import", f"{type(exc).__name__}: {exc}", traceback.format_exc()) from None
    fn = getattr(module, sub.entry_callable, None)
    if not callable(fn):
        raise InputError(sub.manifest, "submission.entry",
                         f"module {mod_name!r} has no callable {sub.entry_callable!r}")
    return fn


def load_weights(path: Path, manifest: Path | None = None, fieldname: str = "weights") -> dict:
    """Load a weights file without executing any code from it.

    safetensors is read as is; .pt/.pth go through `torch.load(weights_only=True)`, which refuses any
    pickle that needs arbitrary objects (and so never runs their code).
    """
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            msg = "refused: the pickle needs arbitrary code to load (only tensors and plain containers are allowed)"
        raise InputError(manifest or path, fieldname, f"cannot load {path.name}: {msg}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise InputError(manifest or path, fieldname, f"{path.name} does not hold a dict of tensors")
    return obj


def with_weights(rate: RatePoint, manifest: Path) -> RatePoint:
    """The rate point with its weights loaded by the suite (a no-op when it names none)."""
    if rate.weights is None:
        return rate
    return dataclasses.replace(rate, state_dict=load_weights(rate.weights, manifest,
                                                             f"rates[{rate.index}].weights"))


def files_hash(directory: Path) -> str:
    """sha256 over the submission's files (relative path + content), to fingerprint what was profiled."""
    h = hashlib.sha256()
    for p in sorted(directory.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(directory)).encode())
            h.update(b"\0")
            h.update(p.read_bytes())
    return h.hexdigest()
