"""Renderers: each reads a Report and writes one format. None of them measures anything."""

from pathlib import Path

from ..report import Report


def write_all(report: Report, out_dir: Path) -> list[Path]:
    """Write report.json and every file renderer's output into out_dir; returns the paths."""
    from . import csv_table, markdown

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    report.write(out_dir / "report.json")
    paths.append(out_dir / "report.json")
    for name, mod in (("table.csv", csv_table), ("table.md", markdown)):
        p = out_dir / name
        p.write_text(mod.render(report))
        paths.append(p)
    return paths
