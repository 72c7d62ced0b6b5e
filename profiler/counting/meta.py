"""Counting the codec's networks at any resolution without computing (meta device).

Foundation stub: the counting issue implements it. Until then the report says the resolutions were
not counted.
"""

from __future__ import annotations


def count_resolutions(codec, cond, result) -> None:
    """Append one entry per profile.toml resolution to `result.resolutions`, or say why not."""
    if cond.counting.resolutions:
        result.not_measured["resolutions"] = "counting at profile.toml resolutions is not available yet"
