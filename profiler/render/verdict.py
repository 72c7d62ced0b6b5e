"""The compliance verdict as text: one line per rule (id, status, measured, limit, what to fix)."""

from __future__ import annotations

import json

from ..model.report import Verdict
from .escape import markup

STATUS_STYLE = {"pass": "green", "fail": "red", "warn": "yellow", "not measured": "cyan"}


def _verdict(compliance: Verdict | dict) -> Verdict:
    return compliance if isinstance(compliance, Verdict) else Verdict.model_validate(
        {"rules_source": "", **compliance})


def lines(compliance: Verdict | dict) -> list[str]:
    """Plain text, one line per rule, then the verdict."""
    compliance = _verdict(compliance)
    out = []
    width = max((len(r.id) for r in compliance.rules), default=0)
    for r in compliance.rules:
        text = f"{r.id:<{width}}  {r.status.upper():<12}  {r.measured}"
        if r.limit:
            text += f"  [limit: {r.limit}]"
        if r.fix:
            text += f"  → fix: {r.fix}"
        out.append(text)
    out.append(f"verdict: {compliance.verdict.upper()} (rules from {compliance.rules_source or '?'})")
    return out


def render(compliance: Verdict | dict, console) -> None:
    """The same lines on a rich console, the status coloured (every text escaped: `[[rates]]` prints)."""
    compliance = _verdict(compliance)
    for line, r in zip(lines(compliance), list(compliance.rules) + [None]):
        if r is None:
            colour = STATUS_STYLE.get(compliance.verdict, "yellow")
            console.print(f"[bold {colour}]{markup(line)}[/]", soft_wrap=True)
        else:
            status = r.status.upper()
            head, rest = line.split(status, 1)
            console.print(markup(head) + f"[{STATUS_STYLE[r.status]}]{status}[/]" + markup(rest), soft_wrap=True)


def to_json(compliance: Verdict | dict) -> str:
    return json.dumps(_verdict(compliance).model_dump(mode="json"), indent=1)
