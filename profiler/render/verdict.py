"""The compliance verdict as text: one line per rule (id, status, measured, limit, what to fix)."""

from __future__ import annotations

import json

STATUS_STYLE = {"pass": "green", "fail": "red", "warn": "yellow", "not measured": "cyan"}


def lines(compliance: dict) -> list[str]:
    """Plain text, one line per rule, then the verdict."""
    out = []
    width = max((len(r["id"]) for r in compliance["rules"]), default=0)
    for r in compliance["rules"]:
        text = f"{r['id']:<{width}}  {r['status'].upper():<12}  {r['measured']}"
        if r["limit"]:
            text += f"  [limit: {r['limit']}]"
        if r["fix"]:
            text += f"  → fix: {r['fix']}"
        out.append(text)
    out.append(f"verdict: {compliance['verdict'].upper()} (rules from {compliance.get('rules_source', '?')})")
    return out


def render(compliance: dict, console) -> None:
    """The same lines on a rich console, the status coloured."""
    from rich.markup import escape

    for line, r in zip(lines(compliance), compliance["rules"] + [None]):
        if r is None:
            colour = STATUS_STYLE.get(compliance["verdict"], "yellow")
            console.print(f"[bold {colour}]{escape(line)}[/]", soft_wrap=True)
        else:
            status = r["status"].upper()
            head, rest = line.split(status, 1)
            console.print(escape(head) + f"[{STATUS_STYLE[r['status']]}]{status}[/]" + escape(rest), soft_wrap=True)


def to_json(compliance: dict) -> str:
    return json.dumps(compliance, indent=1)
