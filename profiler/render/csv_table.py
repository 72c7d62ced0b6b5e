"""table.csv: the standard table, full precision, "not measured" where a figure is missing."""

from __future__ import annotations

import csv
import io

from ..report import Report
from . import table


def render(report: Report) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=table.COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in table.rows(report):
        w.writerow(row)
    buf.write("\n")
    sw = csv.writer(buf, lineterminator="\n")
    sw.writerow(["summary", "value"])
    for k, v in table.summary(report).items():
        sw.writerow([k, v])
    return buf.getvalue()
