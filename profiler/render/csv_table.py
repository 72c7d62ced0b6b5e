"""table.csv: the standard table, full precision, "not measured" where a figure is missing.

Text cells a spreadsheet would evaluate (starting with `=`, `+`, `-`, `@`) get a leading `'`; numbers
stay numbers. After the summary: whether the run finished, the planned rate points it has no result for,
and whether the summary's kMAC/px figures come from complete counts (else they are lower bounds).
"""

from __future__ import annotations

import csv
import io

from .. import derive
from ..model.report import Report
from . import table, tasks_table
from .escape import csv_cell


def render(report: Report) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=table.COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in table.rows(report):
        w.writerow({k: csv_cell(v) for k, v in row.items()})
    buf.write("\n")
    sw = csv.writer(buf, lineterminator="\n")
    sw.writerow(["summary", "value"])
    for k, v in table.summary(report).items():
        sw.writerow([k, csv_cell(v)])
    complete = table.summary_counts_complete(report)
    sw.writerow(["count_complete", table.NOT_MEASURED if complete is None else complete])
    sw.writerow(["complete", derive.is_complete(report)])
    sw.writerow(["missing_rates", " ".join(f"{t:g}" for t in derive.missing_rates(report))])
    if tasks_table.has_tasks(report):   # the compressed-domain tasks, full precision, after a blank line
        buf.write("\n")
        tw = csv.DictWriter(buf, fieldnames=tasks_table.COLUMNS + ["complete", "error"], lineterminator="\n")
        tw.writeheader()
        for row in tasks_table.rows(report):
            tw.writerow({k: csv_cell(tasks_table.NOT_MEASURED if v is None and k not in ("error", "complete") else
                                     (float(v) if "kmac" in k else int(v)) if isinstance(v, table.AtLeast) else v)
                                 for k, v in row.items()})
    return buf.getvalue()
