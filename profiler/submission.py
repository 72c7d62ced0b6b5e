"""submission.toml → `Submission` and its `RatePoint`s; entry-point import; safe weight loading.

The manifest format is a public contract, documented in submissions/README.md. Every validation
error is an `InputError` naming the manifest and the field.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import math
import importlib
import importlib.util
import re
import sys
import traceback
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import InputError, SubmissionError
from .taskspec import check_task_weights, parse_tasks
from .tomlcheck import get, read_toml

MANIFEST = "submission.toml"

# Declared precision of a part: floating point (float16/32/64, bfloat16), integer with N bits (intN,
# uintN) or fixed point with N bits (fixedN). The N is mandatory (JPEG AI asks for it).
PRECISION_RE = re.compile(r"^(float(16|32|64)|bfloat16|u?int([1-9]|[1-5][0-9]|6[0-4])|fixed([1-9]|[1-5][0-9]|6[0-4]))$")

ENTRY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")

# Modules of the suite itself that a manifest may name as its entry (adapters for other libraries).
SUITE_ENTRY_PREFIX = "profiler.adapters."

# Fields a manifest may hold. Anything else is refused: a typo ("verison", "[[rate]]") would otherwise be
# silently ignored. Extend these sets when the format grows.
MANIFEST_TABLES = {"submission", "precision", "rates", "tasks"}
SUBMISSION_FIELDS = {"proponent", "codec", "version", "entry", "encoder_deterministic"}
NAME_MAX_CHARS = 120


def free_text(value: str, manifest: Path, field: str, allow_empty: bool = False) -> str:
    """A proponent's name as written: printable text of bounded length (renderers escape it for each format)."""
    text = value.strip()
    if not text and not allow_empty:
        raise InputError(manifest, field, "must not be empty")
    if len(text) > NAME_MAX_CHARS:
        raise InputError(manifest, field, f"at most {NAME_MAX_CHARS} characters, got {len(text)}")
    if not text.isprintable():
        raise InputError(manifest, field, f"must be printable text on one line, got {text!r}")
    return text


def slug(name: str) -> str:
    """A folder name for a codec name: `Acme [v2] (main)` → `acme-v2-main` (the default reports/<slug>/)."""
    return re.sub(r"[^a-z0-9._+]+", "-", name.lower()).strip("-._+")
RATE_FIELDS = {"target_bpp", "weights", "options"}
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")


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
    # The submission directory (absolute): where a program codec's commands run (adapters/command.py).
    directory: Path | None = None


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
    # False when the proponent declares its encoder non-deterministic: `verify` then compares the sizes of
    # re-encoded bitstreams with the submitted ones instead of their bytes.
    encoder_deterministic: bool = True
    # [[tasks]]: compressed-domain task networks (profiler/taskspec.py), measured by profiler/tasks.py.
    tasks: tuple = ()

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
            "encoder_deterministic": self.encoder_deterministic,
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


def load_submission(directory: Path | str, check_weights: bool = True) -> Submission:
    """Read and validate `directory/submission.toml`, without running any of the submission's code.

    The entry module must exist and define its callable (read with `ast`, never imported); with
    `check_weights`, every weights file is loaded once the safe way (see `load_weights`) and dropped.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(directory, None, "submission directory not found")
    directory = directory.resolve()
    manifest = directory / MANIFEST
    doc = read_toml(manifest)
    _refuse_unknown(doc, MANIFEST_TABLES, manifest, "")

    sub = get(doc, "submission", dict, manifest, "submission")
    _refuse_unknown(sub, SUBMISSION_FIELDS, manifest, "submission.")
    proponent = free_text(get(sub, "proponent", str, manifest, "submission.proponent"), manifest, "submission.proponent")
    codec = free_text(get(sub, "codec", str, manifest, "submission.codec"), manifest, "submission.codec")
    if not slug(codec):
        raise InputError(manifest, "submission.codec", f"needs at least one letter or digit, got {codec!r}")
    version = free_text(get(sub, "version", str, manifest, "submission.version", ""), manifest, "submission.version",
                        allow_empty=True)
    entry = get(sub, "entry", str, manifest, "submission.entry")
    deterministic = get(sub, "encoder_deterministic", bool, manifest, "submission.encoder_deterministic", True)
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
        if not (target > 0 and math.isfinite(target)):
            raise InputError(manifest, f"{where}.target_bpp", f"must be a positive finite number of bpp, got {target!r}")
        if target in seen:
            raise InputError(manifest, f"{where}.target_bpp", f"duplicate target rate {target}")
        seen.add(target)
        weights = None
        if "weights" in r:
            rel = get(r, "weights", str, manifest, f"{where}.weights")
            weights = _inside(directory, rel, manifest, f"{where}.weights")
            if not weights.is_file():
                raise InputError(manifest, f"{where}.weights", f"file {rel!r} not found")
            if weights.suffix not in WEIGHT_SUFFIXES:
                raise InputError(manifest, f"{where}.weights",
                                 f"expected a .safetensors, .pt or .pth file, got {rel!r}")
        options = get(r, "options", dict, manifest, f"{where}.options", {})
        _refuse_unknown(r, RATE_FIELDS, manifest, f"{where}.")
        rates.append(RatePoint(index=i, target_bpp=float(target), weights=weights, options=dict(options),
                             directory=directory))

    sub_obj = Submission(directory=directory, manifest=manifest, proponent=proponent, codec=codec,
                         version=version, entry=entry, precision=precision, encoder_deterministic=deterministic,
                         rates=tuple(sorted(rates, key=lambda x: x.target_bpp)),
                         tasks=parse_tasks(doc, directory, manifest))
    _check_entry_exists(sub_obj)
    if check_weights:
        # Every weights file is opened now, in the parent, before any rate point runs: a missing, corrupt
        # or malicious file costs one line and exit 2, not a failed worker minutes later.
        for r in sub_obj.rates:
            if r.weights is not None:
                check_weights_file(r.weights, manifest, f"rates[{r.index}].weights")
        check_task_weights(sub_obj.tasks, manifest)
    return sub_obj


def _refuse_unknown(table: dict, allowed: set[str], manifest: Path, prefix: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InputError(manifest, f"{prefix}{unknown[0]}",
                         f"unknown field (expected one of {', '.join(sorted(allowed))})")


def _check_entry_exists(sub: Submission) -> None:
    """The entry module must be a file in the directory (or a suite adapter) that defines the callable.

    Checked by parsing the module with `ast`, never by importing it: nothing of the submission runs in
    the parent process.
    """
    mod = sub.entry_module
    if mod.startswith(SUITE_ENTRY_PREFIX):
        # The suite's own adapters are trusted code: import them to check the callable.
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError:
            raise InputError(sub.manifest, "submission.entry", f"module {mod!r} not found") from None
        except Exception as exc:  # an adapter whose library is missing or broken (e.g. compressai)
            raise InputError(sub.manifest, "submission.entry",
                             f"module {mod!r} cannot be imported ({type(exc).__name__}: {exc})") from None
        if not callable(getattr(module, sub.entry_callable, None)):
            raise InputError(sub.manifest, "submission.entry", f"module {mod!r} has no callable {sub.entry_callable!r}")
        return
    path = sub.directory.joinpath(*mod.split(".")).with_suffix(".py")
    pkg = sub.directory.joinpath(*mod.split("."), "__init__.py")
    source_file = path if path.is_file() else pkg if pkg.is_file() else None
    if source_file is None:
        raise InputError(sub.manifest, "submission.entry",
                         f"module {mod!r} not found in the submission directory (expected {path.name})")
    if not source_file.resolve().is_relative_to(sub.directory):
        raise InputError(sub.manifest, "submission.entry",
                         f"module {mod!r} is a link to a file outside the submission directory")
    rel = source_file.relative_to(sub.directory)
    try:
        tree = ast.parse(source_file.read_bytes(), filename=str(rel))
    except SyntaxError as exc:
        raise InputError(sub.manifest, "submission.entry",
                         f"{rel} line {exc.lineno}: not valid Python ({exc.msg})") from None
    except (OSError, ValueError) as exc:
        raise InputError(sub.manifest, "submission.entry", f"{rel} cannot be read ({exc})") from None
    names, star_import = _top_level_names(tree)
    if sub.entry_callable not in names and not star_import:
        raise InputError(sub.manifest, "submission.entry",
                         f"{rel} defines no {sub.entry_callable!r} (expected a function build(rate, device))")


def _top_level_names(tree: ast.Module) -> tuple[set[str], bool]:
    """Names bound at module level (def, class, assignment, import), and whether a `*` import may add more."""
    names: set[str] = set()
    star = False
    # Module-level `if`/`try` blocks (optional imports) bind names too.
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    star = True
                else:
                    names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for block in ("body", "orelse", "finalbody"):
                stack.extend(getattr(node, block, []))
            for handler in getattr(node, "handlers", []):
                stack.extend(handler.body)
    return names, star


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
        # Submissions share module names (`codec`): one imported earlier in this process from another
        # directory must not stand in for this one's.
        cached = sys.modules.get(mod_name.split(".")[0])
        where = getattr(cached, "__file__", None)
        if cached is not None and (where is None or not Path(where).resolve().is_relative_to(sub.directory)):
            for name in [m for m in sys.modules if m == mod_name.split(".")[0] or m.startswith(mod_name.split(".")[0] + ".")]:
                del sys.modules[name]
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


def load_weights(path: Path, manifest: Path | None = None, fieldname: str = "weights", mmap: bool = False) -> dict:
    """Load a weights file without executing any code from it.

    safetensors is read as is; .pt/.pth go through `torch.load(weights_only=True)`, whose unpickler
    only rebuilds tensors and plain containers and refuses any other global (`os.system`, a class of
    the submission) *before* calling it: a malicious pickle is refused, never run. The result must be a
    dict of tensors (a checkpoint's `{"state_dict": {...}}` is unwrapped). With `mmap` (validation only),
    zip-format .pt files are mapped rather than read and a safetensors file's header and layout are
    checked without reading its tensors (an empty dict is returned for it).
    """
    import torch

    where = manifest or path
    if path.stat().st_size == 0:
        raise InputError(where, fieldname, f"{path.name} is empty")
    try:
        if path.suffix == ".safetensors" and mmap:
            from safetensors import safe_open

            # Opening checks the header and that every tensor's bytes lie inside the file; get_slice
            # reads each tensor's dtype and shape without reading its data.
            with safe_open(str(path), framework="pt") as fh:
                for key in fh.keys():
                    fh.get_slice(key).get_shape()
            return {}
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path))
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=True,
                             mmap=mmap and zipfile.is_zipfile(path))
    except Exception as exc:
        text = str(exc)
        msg = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
        unsafe = re.search(r"GLOBAL ([\w.]+)", text)
        stopped = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
        if unsafe:
            msg = (f"refused: it calls {unsafe.group(1)}, which could run code when unpickled (it was not run); "
                   "save a dict of tensors, e.g. with safetensors")
        elif stopped:
            msg = (f"not a valid torch.save file of tensors (the safe unpickler stopped at: "
                   f"{stopped.group(1).strip()}; nothing in it was run)")
        elif path.suffix == ".safetensors":
            msg = f"not a valid safetensors file ({msg})"
        else:
            msg = f"not a valid torch.save file ({msg})"
        raise InputError(where, fieldname, f"cannot load {path.name}: {msg}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise InputError(where, fieldname, f"{path.name} holds a {type(obj).__name__}, expected a dict of tensors")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise InputError(where, fieldname, f"{path.name}: entry {key!r} is a {type(value).__name__}, "
                                               "expected a dict of tensors only")
    return obj


def check_weights_file(path: Path, manifest: Path, fieldname: str) -> None:
    """Validate a weights file the way the worker will load it, then drop it (zip .pt files are mapped)."""
    load_weights(path, manifest, fieldname, mmap=True)


def with_weights(rate: RatePoint, manifest: Path) -> RatePoint:
    """The rate point with its weights loaded by the suite (a no-op when it names none)."""
    if rate.weights is None:
        return rate
    return dataclasses.replace(rate, state_dict=load_weights(rate.weights, manifest,
                                                             f"rates[{rate.index}].weights"))


HASH_CHUNK = 1 << 20          # files are hashed in 1 MiB pieces: a 2 GiB weights file is never read whole
OUT_LOCK_NAME = ".jpegai-profile.lock"   # = profiler.outdir.LOCK_NAME (outdir is above this module)


def _fingerprinted(directory: Path) -> list[Path]:
    """The submission's files that its fingerprint covers, sorted: every regular file below `directory`
    except `__pycache__`, and an output folder of this tool (a folder holding its lock file,
    `OUT_LOCK_NAME`) with everything below it, should one sit inside the submission directory."""
    paths = sorted(directory.rglob("*"))
    skipped = [p.parent for p in paths if p.name == OUT_LOCK_NAME and p.parent != directory]
    return [p for p in paths
            if p.is_file() and "__pycache__" not in p.parts and p.name != OUT_LOCK_NAME
            and not any(p == d or p.is_relative_to(d) for d in skipped)]


def files_fingerprint(directory: Path) -> tuple[str, dict[str, str]]:
    """(`files_hash`, and the sha256 of each file by its path relative to `directory`), in one reading.

    The per-file digests are what `--resume` compares: a file the codec creates in its own directory
    during a run (a cache) was not there when the profile began and does not stop it resuming, while a
    change to any file that was there does, naming the file."""
    h = hashlib.sha256()
    each: dict[str, str] = {}
    for p in _fingerprinted(directory):
        rel = str(p.relative_to(directory))
        h.update(rel.encode())
        h.update(b"\0")
        one = hashlib.sha256()
        with p.open("rb") as fh:
            while chunk := fh.read(HASH_CHUNK):
                h.update(chunk)
                one.update(chunk)
        each[rel] = one.hexdigest()
    return h.hexdigest(), each


def files_hash(directory: Path) -> str:
    """sha256 over the submission's files (relative path + content), to fingerprint what was profiled.

    Streams each file in chunks. Leaves out `__pycache__`, and an output folder of this tool (a folder
    holding its lock file, `OUT_LOCK_NAME`) with everything below it, should one sit inside the
    submission directory: writing a report there must not change the fingerprint that `--resume` checks.
    """
    return files_fingerprint(directory)[0]
