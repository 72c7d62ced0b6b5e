"""Imports point one way: cli → run/render/compliance → derive → measure/counting → input → model.

Every import of every module of the package is parsed (those inside functions too) and resolved to the
module it names; a module may import its own layer or a lower one, never a higher one. Nothing imports
the package facade (`profiler/__init__.py`) except the CLI; no library module imports the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "profiler"

# Lowest first. A module is placed by the longest prefix that names it.
LAYERS: list[tuple[str, ...]] = [
    ("profiler.errors", "profiler.version", "profiler.tomlcheck", "profiler.model"),
    ("profiler.conditions", "profiler.submission", "profiler.images", "profiler.codec", "profiler.outdir",
     "profiler.delivery", "profiler.taskspec"),
    ("profiler.counting", "profiler.params", "profiler.precision", "profiler.timing", "profiler.memory",
     "profiler.quality", "profiler.metrics", "profiler.interop", "profiler.environment", "profiler.adapters",
     "profiler.anchors", "profiler.untimed", "profiler.tasks"),
    ("profiler.derive", "profiler.bdrate"),
    ("profiler.compliance", "profiler.render", "profiler.aggregation", "profiler.performance", "profiler.zoo"),
    ("profiler.runner", "profiler.worker", "profiler.slots", "profiler.anchor_delivery", "profiler.cluster",
     "profiler.zygote"),
    ("profiler.cli", "profiler.__main__", "profiler"),
]


def layer_of(module: str) -> int:
    best = None
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(best[1])):
                best = (i, name)
    assert best is not None, f"{module} is in no layer: add it to LAYERS (and to docs/architecture.md)"
    return best[0]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file that names a module of the package."""
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "profiler"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "profiler":
                continue
            # `from . import derive` names a module; `from .x import name` names x.
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.append((node.lineno, sub if (PACKAGE.parent / Path(*sub.split("."))).with_suffix(".py").exists()
                            or (PACKAGE.parent / Path(*sub.split(".")) / "__init__.py").exists() else target))
    return out


def test_every_import_points_down_or_sideways():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        src = module_name(path)
        for line, target in imports(path):
            if layer_of(target) > layer_of(src):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {src} imports {target}")
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_the_layer_test_sees_imports_inside_functions(tmp_path):
    # A check of the checker: an import inside a function body is found and resolved.
    found = imports(PACKAGE / "cli" / "profile.py")
    assert any(t == "profiler.runner" for _, t in found)
    assert layer_of("profiler.runner") > layer_of("profiler.derive") > layer_of("profiler.model.report")


def test_no_library_module_imports_the_cli():
    for path in sorted(PACKAGE.rglob("*.py")):
        src = module_name(path)
        if src.startswith("profiler.cli") or src in ("profiler", "profiler.__main__"):
            continue
        assert not [t for _, t in imports(path) if t.startswith("profiler.cli")], src
