"""table.json: the standard table as JSON for scripts — rows, summary, verdict.

Unlike report.json (everything measured) this holds only the figures of the standard table. A figure
that was not measured is null, and `not_measured` says why. `complete` is false when the run did not
finish (`missing_rates`: the planned rate points it has no result for); a kMAC/px figure whose count is
incomplete is a lower bound (`count_complete` false on its row, `complete` false in `*_at`).
"""

from __future__ import annotations

import json

from .. import derive
from ..model.report import Report
from . import table, tasks_table


def _null(v):
    return None if table.is_not_measured(v) else float(v) if isinstance(v, table.AtLeast) else v


def to_dict(report: Report) -> dict:
    verdict, rules = table.compliance_view(report)
    s = derive.summary(report)
    return {
        "schema_version": report.schema_version,
        "proponent": report.submission.proponent,
        "codec": report.submission.codec,
        "conditions": report.conditions.name,
        "complete": derive.is_complete(report),
        "planned_rates": derive.planned_rates(report),
        "missing_rates": derive.missing_rates(report),
        "columns": table.COLUMNS,
        "rows": [{k: _null(v) for k, v in row.items()} for row in table.rows(report)],
        "summary": {k: _null(v) for k, v in table.summary(report).items()},
        "kmac_px_decoder_worst_at": s.kmac_px_decoder_worst_at.model_dump(mode="json")
        if s.kmac_px_decoder_worst_at else None,
        "kmac_px_encoder_max_at": s.kmac_px_encoder_max_at.model_dump(mode="json")
        if s.kmac_px_encoder_max_at else None,
        "verdict": verdict,
        "rules": rules,
        "not_measured": table.not_measured_reasons(report),
        **({"tasks": {"columns": tasks_table.COLUMNS, "note": tasks_table.NOTE,
                      "rows": [{k: _null(v) for k, v in row.items()} for row in tasks_table.rows(report)]}}
           if tasks_table.has_tasks(report) else {}),
    }


def render(report: Report) -> str:
    return json.dumps(to_dict(report), indent=1) + "\n"
