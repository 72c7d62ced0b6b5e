"""Renderers: each reads a Report and writes one format. None of them measures anything or changes it."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from .. import derive
from ..model.io import write_report
from ..model.report import Report

# file name → renderer module (each has `render(report) -> str`); report.json is the Report itself.
FILES = {
    "table.csv": "csv_table",
    "table.md": "markdown",
    "table.txt": "txt",
    "table.json": "json_table",
    "vm.json": "vm",
    "report.html": "html",
}


def write_all(report: Report, out_dir: Path) -> list[Path]:
    """Write report.json (its stored summary refreshed) and every file renderer's output into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_report(derive.with_summary(report), out_dir / "report.json")
    paths = [out_dir / "report.json"]
    for name, module in FILES.items():
        p = out_dir / name
        p.write_text(import_module(f"{__name__}.{module}").render(report), encoding="utf-8")
        paths.append(p)
    return paths
