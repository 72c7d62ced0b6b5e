"""table.json: the standard table as JSON for scripts — rows, summary, verdict.

Unlike report.json (everything measured) this holds only the figures of the standard table. A figure
that was not measured is null, and `not_measured` says why.
"""

from __future__ import annotations

import json

from ..report import Report
from . import table


def _null(v):
    return None if table.is_not_measured(v) else v


def to_dict(report: Report) -> dict:
    verdict, rules = table.compliance_view(report)
    return {
        "schema_version": report.schema_version,
        "proponent": report.submission["proponent"],
        "codec": report.submission["codec"],
        "conditions": report.conditions.get("name"),
        "columns": table.COLUMNS,
        "rows": [{k: _null(v) for k, v in row.items()} for row in table.rows(report)],
        "summary": {k: _null(v) for k, v in table.summary(report).items()},
        "verdict": verdict,
        "rules": rules,
        "not_measured": table.not_measured_reasons(report),
    }


def render(report: Report) -> str:
    return json.dumps(to_dict(report), indent=1) + "\n"
