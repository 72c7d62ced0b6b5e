"""A proponent's names are free text: `Acme [v2] (main)` profiles into reports/acme-v2-main/ and is shown
as written in every output, escaped for each (rich markup, HTML, CSV formulas, Markdown)."""

from __future__ import annotations

import csv
import html
import json
import re

import pytest

from profiler.errors import InputError
from profiler.submission import slug

from conftest import CODECS, run_cli

NAME, PROPONENT = "Acme [v2] (main)", "=Acme <Labs> & Co"


def test_slug():
    assert slug(NAME) == "acme-v2-main"
    assert slug("RefNet") == "refnet" and slug("bmshj2018-hyperprior") == "bmshj2018-hyperprior"
    assert slug("[ ]") == ""


@pytest.mark.slow
def test_free_text_name_profiles_into_its_slug_and_is_shown_as_written(tmp_path):
    proc = run_cli(str(CODECS / "acme_named"), "--quick", "--device", "cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "reports" / "acme-v2-main"
    assert (out / "report.json").is_file()
    assert json.loads((out / "report.json").read_text())["submission"]["codec"] == NAME
    # Console: the name as written, brackets and all (not eaten as rich markup).
    assert NAME in proc.stdout and "[v2]" in proc.stdout
    # HTML: escaped, so the page shows it as written.
    page = (out / "report.html").read_text()
    assert html.escape(NAME) in page and html.escape(PROPONENT) in page and "<Labs>" not in page
    # CSV: a cell that starts like a formula is prefixed; reading it back gives the text after the quote.
    rows = list(csv.reader((out / "table.csv").read_text().splitlines()))
    header, first = rows[0], rows[1]
    assert first[header.index("codec")] == NAME
    assert first[header.index("proponent")] == "'" + PROPONENT
    # Markdown: the brackets are escaped (not a link), the text otherwise as written.
    md = (out / "table.md").read_text()
    assert re.search(r"Acme \\\[v2\\\] \(main\)", md), md[:400]
    # table.json and vm.json carry the name verbatim (JSON needs no escaping beyond its own).
    assert json.loads((out / "table.json").read_text())["rows"][0]["codec"] == NAME


def test_names_that_are_not_printable_text_are_refused(tmp_path):
    from profiler.submission import load_submission

    d = tmp_path / "s"
    d.mkdir()
    (d / "codec.py").write_text("def build(rate, device):\n    pass\n")
    base = (CODECS / "acme_named" / "submission.toml").read_text()
    (d / "submission.toml").write_text(base.replace(NAME, "Acme\\u0007"))
    with pytest.raises(InputError, match=r"submission\.codec: must be printable"):
        load_submission(d)
    (d / "submission.toml").write_text(base.replace(NAME, "x" * 121))
    with pytest.raises(InputError, match=r"submission\.codec: at most 120 characters"):
        load_submission(d)
