"""Plots for the HTML pages, made with matplotlib and returned as self-contained SVG data URIs.

No pyplot (no global state, no GUI backend): each plot is its own `Figure`. SVG text is drawn as
paths and the ids are salted and dated deterministically, so a page renders the same everywhere and
two renders of one report are byte-identical.
"""

from __future__ import annotations

import base64
import io
import math

from matplotlib import rc_context
from matplotlib.figure import Figure

_RC = {"svg.hashsalt": "jpegai-profile", "svg.fonttype": "path", "font.size": 9}
MARKERS = "osD^v<>ph*"


def to_data_uri(fig: Figure) -> str:
    buf = io.StringIO()
    with rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue().encode()).decode()


def _fig(width: float = 6.0, height: float = 3.4) -> tuple[Figure, object]:
    with rc_context(_RC):
        fig = Figure(figsize=(width, height))
        ax = fig.add_subplot()
        ax.grid(True, alpha=0.3)
    return fig, ax


def _finite(v) -> bool:
    """A plottable number: numpy and pandas scalars included; None, NaN, pd.NA and text are not."""
    if v is None or isinstance(v, (bool, str)):
        return False
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def lines(series: dict[str, list[tuple[float, float | None]]], xlabel: str, ylabel: str, title: str,
          logx: bool = False) -> str:
    """One line per series over (x, y) points; points whose y is None (not measured) are left out."""
    with rc_context(_RC):
        fig, ax = _fig()
        for n, (name, pts) in enumerate(series.items()):
            pts = [(x, y) for x, y in pts if _finite(x) and _finite(y)]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=MARKERS[n % len(MARKERS)], label=name)
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        if ax.get_legend_handles_labels()[0]:  # nothing drawn (every rate failed): no legend, no warning
            ax.legend(fontsize=8)
        return to_data_uri(fig)


def scatter(series: dict[str, list[tuple[float, float | None]]], xlabel: str, ylabel: str, title: str) -> str:
    with rc_context(_RC):
        fig, ax = _fig()
        for n, (name, pts) in enumerate(series.items()):
            pts = [(x, y) for x, y in pts if _finite(x) and _finite(y)]
            if pts:
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=MARKERS[n % len(MARKERS)], label=name, s=30)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        if ax.get_legend_handles_labels()[0]:  # nothing drawn (every rate failed): no legend, no warning
            ax.legend(fontsize=8)
        return to_data_uri(fig)


def grouped_bars(groups: list[str], bars: dict[str, list[float | None]], ylabel: str, title: str) -> str:
    """Bars per group (x axis), one colour per key of `bars`; a None value draws no bar."""
    with rc_context(_RC):
        fig, ax = _fig()
        k = max(1, len(bars))
        width = 0.8 / k
        for n, (name, vals) in enumerate(bars.items()):
            xs = [i + (n - (k - 1) / 2) * width for i in range(len(groups))]
            pts = [(x, v) for x, v in zip(xs, vals) if _finite(v)]
            ax.bar([p[0] for p in pts], [p[1] for p in pts], width=width, label=name)
        ax.set_xticks(range(len(groups)), groups, rotation=20 if len(groups) > 4 else 0)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        return to_data_uri(fig)


def hbars(labels: list[str], values: list[float], xlabel: str, title: str) -> str:
    """Horizontal bars, first label on top."""
    with rc_context(_RC):
        fig, ax = _fig(6.5, max(2.0, 0.32 * len(labels) + 1.0))
        ax.barh(range(len(labels))[::-1], values, color="C0")
        ax.set_yticks(range(len(labels))[::-1], labels, fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_title(title)
        return to_data_uri(fig)
