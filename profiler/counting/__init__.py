"""Counting multiply-accumulates at the aten dispatch level.

- `formulas`: op → cost, small pure functions of shapes, one registry.
- `engine`: the dispatch mode that runs them, attributes costs to modules and lists uncounted ops.
- `conventions`: how a cost becomes a figure (strict MACs, or the JPEG AI reference software's way).
"""

from .engine import CountResult, OpCounter, count_call

__all__ = ["CountResult", "OpCounter", "count_call"]
