"""submission.toml `[[tasks]]` → `TaskSpec`s: compressed-domain task networks a submission declares.

A task runs on the latent representation the codec's `decode_latents(bitstream)` returns (entropy decoding
and whatever networks produce that representation, without the synthesis transform). Each table:

    [[tasks]]
    name = "latent-classifier"          # unique, printable
    kind = "classification"             # classification | super-resolution | denoising | foreground
    entry = "tasks:build_task"          # module of the submission directory : callable
    weights = "weights/head.safetensors" # optional, inside the submission directory
    options = { blocks = 2 }            # optional, handed to the callable

The callable is `build_task(task: TaskSpec, rate: RatePoint, device) -> torch.nn.Module`, once per rate
point (latent channels differ between models); its `forward` takes what `decode_latents` returns.
Validated without running any of the submission's code (the module is read with `ast`); every error is
one line naming the manifest and the field (`tasks[1].kind`).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import InputError, SubmissionError
from .tomlcheck import get

TASK_KINDS = ("classification", "super-resolution", "denoising", "foreground")
TASK_FIELDS = {"name", "kind", "entry", "weights", "options"}


@dataclass(frozen=True)
class TaskSpec:
    """One `[[tasks]]` table, as handed to the submission's `build_task(task, rate, device)`."""

    index: int
    name: str
    kind: str
    entry: str                          # "module:callable"
    weights: Path | None = None         # absolute, inside the submission directory
    options: dict = field(default_factory=dict)
    state_dict: dict | None = None      # the weights as loaded by the suite (`with_task_weights`)

    @property
    def module(self) -> str:
        return self.entry.split(":", 1)[0]

    @property
    def callable_name(self) -> str:
        return self.entry.split(":", 1)[1]

    def to_dict(self, directory: Path) -> dict:
        return {"index": self.index, "name": self.name, "kind": self.kind, "entry": self.entry,
                "weights": str(self.weights.relative_to(directory)) if self.weights else None,
                "options": dict(self.options)}


def parse_tasks(doc: dict, directory: Path, manifest: Path) -> tuple[TaskSpec, ...]:
    """The `[[tasks]]` array of a parsed manifest (absent: no tasks), each table checked field by field."""
    from .submission import ENTRY_RE, WEIGHT_SUFFIXES, _inside, _refuse_unknown, free_text

    if "tasks" not in doc:
        return ()
    tables = get(doc, "tasks", list, manifest, "tasks")
    out: list[TaskSpec] = []
    names: set[str] = set()
    for i, t in enumerate(tables):
        where = f"tasks[{i}]"
        if not isinstance(t, dict):
            raise InputError(manifest, where, "expected a table ([[tasks]])")
        _refuse_unknown(t, TASK_FIELDS, manifest, f"{where}.")
        name = free_text(get(t, "name", str, manifest, f"{where}.name"), manifest, f"{where}.name")
        if name in names:
            raise InputError(manifest, f"{where}.name", f"duplicate task name {name!r}")
        names.add(name)
        kind = get(t, "kind", str, manifest, f"{where}.kind")
        if kind not in TASK_KINDS:
            raise InputError(manifest, f"{where}.kind", f"expected one of {', '.join(TASK_KINDS)}, got {kind!r}")
        entry = get(t, "entry", str, manifest, f"{where}.entry")
        if not ENTRY_RE.match(entry):
            raise InputError(manifest, f"{where}.entry", f"expected 'module:callable', got {entry!r}")
        weights = None
        if "weights" in t:
            rel = get(t, "weights", str, manifest, f"{where}.weights")
            weights = _inside(directory, rel, manifest, f"{where}.weights")
            if not weights.is_file():
                raise InputError(manifest, f"{where}.weights", f"file {rel!r} not found")
            if weights.suffix not in WEIGHT_SUFFIXES:
                raise InputError(manifest, f"{where}.weights", f"expected a .safetensors, .pt or .pth file, got {rel!r}")
        options = get(t, "options", dict, manifest, f"{where}.options", {})
        for key, value in options.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise InputError(manifest, f"{where}.options.{key}", f"must be a finite number, got {value!r}")
        spec = TaskSpec(index=i, name=name, kind=kind, entry=entry, weights=weights, options=dict(options))
        _check_task_entry(spec, directory, manifest, f"{where}.entry")
        out.append(spec)
    return tuple(out)


def _check_task_entry(task: TaskSpec, directory: Path, manifest: Path, fieldname: str) -> None:
    """The module is a file of the submission directory that defines the callable (read with `ast`)."""
    import ast

    from .submission import _top_level_names

    path = directory.joinpath(*task.module.split(".")).with_suffix(".py")
    pkg = directory.joinpath(*task.module.split("."), "__init__.py")
    source = path if path.is_file() else pkg if pkg.is_file() else None
    if source is None:
        raise InputError(manifest, fieldname,
                         f"module {task.module!r} not found in the submission directory (expected {path.name})")
    if not source.resolve().is_relative_to(directory):
        raise InputError(manifest, fieldname, f"module {task.module!r} is a link to a file outside the submission directory")
    rel = source.relative_to(directory)
    try:
        tree = ast.parse(source.read_bytes(), filename=str(rel))
    except SyntaxError as exc:
        raise InputError(manifest, fieldname, f"{rel} line {exc.lineno}: not valid Python ({exc.msg})") from None
    names, star = _top_level_names(tree)
    if task.callable_name not in names and not star:
        raise InputError(manifest, fieldname,
                         f"{rel} defines no {task.callable_name!r} (expected a function build_task(task, rate, device))")


def check_task_weights(tasks: tuple[TaskSpec, ...], manifest: Path) -> None:
    """Every task weights file opened once the safe way and dropped (before any worker starts)."""
    from .submission import check_weights_file

    for t in tasks:
        if t.weights is not None:
            check_weights_file(t.weights, manifest, f"tasks[{t.index}].weights")


def with_task_weights(task: TaskSpec, manifest: Path) -> TaskSpec:
    """The task with its weights loaded by the suite (a no-op when it names none)."""
    from .submission import load_weights

    if task.weights is None:
        return task
    return dataclasses.replace(task, state_dict=load_weights(task.weights, manifest, f"tasks[{task.index}].weights"))


def load_task_entry(task: TaskSpec, manifest: Path) -> Callable[..., Any]:
    """Import the task's module (the submission directory is on sys.path: `submission.load_entry` ran
    first) and return its `build_task` callable. The submission's import errors are SubmissionErrors."""
    import traceback

    try:
        module = importlib.import_module(task.module)
    except ModuleNotFoundError as exc:
        if exc.name == task.module:
            raise InputError(manifest, f"tasks[{task.index}].entry", f"module {task.module!r} not found") from None
        raise SubmissionError("task import", f"{type(exc).__name__}: {exc}", traceback.format_exc()) from None
    except Exception as exc:
        raise SubmissionError("task import", f"{type(exc).__name__}: {exc}", traceback.format_exc()) from None
    fn = getattr(module, task.callable_name, None)
    if not callable(fn):
        raise InputError(manifest, f"tasks[{task.index}].entry",
                         f"module {task.module!r} has no callable {task.callable_name!r}")
    return fn
