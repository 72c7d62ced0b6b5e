"""The renderers' outputs for the fixture reports, byte for byte against tests/fixtures/golden/.

A change here must be a change someone meant (a fixed bug, a new column): regenerate with
`python tests/fixtures/make_golden.py` and say why in the commit. Plot images (matplotlib SVG data URIs)
are replaced by a placeholder before comparing: their bytes depend on the matplotlib version.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIXTURE_REPORTS = ("report_fixnet", "report_betanet", "report_acme", "report_tasks")
_DATA_URI = re.compile(r"data:image/svg\+xml;base64,[A-Za-z0-9+/=]+")


def rendered(name: str) -> dict[str, str]:
    """Every file renderer's output and the console's (200 columns) for one fixture report."""
    import io
    from importlib import import_module

    from rich.console import Console

    from profiler import render
    from profiler.render import console
    from profiler.model.io import read_report

    report = read_report(FIXTURES / f"{name}.json")
    out = {}
    for file, module in render.FILES.items():
        out[file] = _DATA_URI.sub("data:image/svg+xml;base64,PLOT", import_module(f"profiler.render.{module}").render(report))
    buf = io.StringIO()
    console.render(report, Console(file=buf, width=200, color_system=None, force_terminal=False))
    out["console.txt"] = buf.getvalue()
    return out


@pytest.mark.parametrize("name", FIXTURE_REPORTS)
def test_renderers_match_the_golden_files(name):
    golden = FIXTURES / "golden" / name
    for file, text in rendered(name).items():
        expected = (golden / file).read_text(encoding="utf-8")
        assert text == expected, f"{name}/{file} differs from the golden file"
