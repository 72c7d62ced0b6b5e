"""Escaping of free text (codec and proponent names, error messages, paths, module names) per format.

Submission-provided text is printable text, shown as written: each renderer escapes it for its own
format, here, and nowhere else. Numbers are not text and are never escaped.
"""

from __future__ import annotations

import html as _html

from rich.markup import escape as _rich_escape

# A spreadsheet reads a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def markup(text: object) -> str:
    """Text for rich console markup: `[cuda:0]`, `[/red]`, `[[rates]]` print as written."""
    return _rich_escape(str(text))


def html(text: object) -> str:
    """Text for HTML element content and quoted attribute values."""
    return _html.escape(str(text), quote=True)


def csv_cell(value: object) -> object:
    """A CSV cell that a spreadsheet must not evaluate: text starting with `=`, `+`, `-`, `@` gets a
    leading `'`. Numbers (and booleans, None) are returned unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


# Characters that make Markdown (GitHub-flavoured) format text: links `[a](b)`, emphasis, code, raw HTML.
_MD_SPECIAL = "\\`*_[]<|"


def markdown_text(text: object) -> str:
    """Text for Markdown prose on one line, shown as written: `Acme [v2](main)` is no link, `<b>` no
    HTML, `a_b_c` no emphasis; newlines folded."""
    out = "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in str(text))
    return out.replace("\r", " ").replace("\n", " ")


def markdown_cell(text: object) -> str:
    """Text for a Markdown table cell: as `markdown_text`, and `|` (which would end the cell) escaped."""
    return markdown_text(text)


def markdown_code(text: object) -> str:
    """Text inside a Markdown code span (`…`), where backslashes are literal: backticks and newlines go."""
    return str(text).replace("`", "'").replace("\r", " ").replace("\n", " ")
