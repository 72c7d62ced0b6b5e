"""Renderers: each reads a Report and writes one format. None of them measures anything."""

from pathlib import Path

from ..report import Report

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
    """Write report.json and every file renderer's output into out_dir; returns the paths."""
    from importlib import import_module

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    report.write(out_dir / "report.json")
    paths.append(out_dir / "report.json")
    for name, module in FILES.items():
        p = out_dir / name
        p.write_text(import_module(f"{__name__}.{module}").render(report), encoding="utf-8")
        paths.append(p)
    return paths
