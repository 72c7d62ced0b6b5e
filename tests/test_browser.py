"""The HTML report and the aggregate page in a real headless browser (Debian's chromium).

Each page must load with no console message at all (our pages log nothing, so any message — an
error, a failed resource, an uncaught exception — is a fault), every plot must decode (the page's
own load script records how many did, read back from the DOM dump), and the screenshot must hold
the plots' colours where they are drawn.
"""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from profiler.aggregation import aggregate, to_html
from profiler.render import html
from profiler.model.io import read_report

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (the README's test set-up installs it)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]
# matplotlib's first two default colours (tab:blue, tab:orange): every plot draws with them.
PLOT_COLOURS = [(31, 119, 180), (255, 127, 14)]


def chromium(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", *args, page.as_uri()],
                          capture_output=True, text=True, timeout=120)


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def load(page: Path, tmp: Path) -> tuple[str, list[str], np.ndarray]:
    dom = chromium(page, tmp, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = tmp / "shot.png"
    snap = chromium(page, tmp, "--window-size=1280,2000", f"--screenshot={shot}")
    assert snap.returncode == 0 and shot.is_file(), snap.stderr[-2000:]
    return dom.stdout, console_messages(dom.stderr) + console_messages(snap.stderr), \
        np.asarray(Image.open(shot).convert("RGB")).astype(int)


def colour_pixels(img: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int((np.abs(img - np.array(colour)).sum(axis=2) < 30).sum())


def test_console_messages_are_caught(tmp_path):
    """The check itself: a page that logs an error and throws is reported."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>console.error('deliberate'); missing();</script></body></html>")
    msgs = console_messages(chromium(page, tmp_path, "--dump-dom").stderr)
    assert any("deliberate" in m for m in msgs) and any("missing is not defined" in m for m in msgs)


def test_report_html_in_browser(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(html.render(read_report(FIXTURES / "report_fixnet.json")), encoding="utf-8")
    dom, messages, img = load(page, tmp_path)
    assert messages == []
    assert 'data-plots-total="4"' in dom and 'data-plots-loaded="4"' in dom
    assert 'id="verdict">fail</span>' in dom
    # The plots sit below the standard table, in the first 2000 px: their lines and bars are drawn there.
    assert colour_pixels(img, PLOT_COLOURS[0]) > 2000 and colour_pixels(img, PLOT_COLOURS[1]) > 2000
    plots_band = img[500:1300]
    assert (plots_band.sum(axis=2) < 600).mean() > 0.02          # not blank: dark pixels of text and axes


def test_aggregate_html_in_browser(tmp_path):
    reports = tmp_path / "reports"
    for name in ("fixnet", "betanet"):
        (reports / name).mkdir(parents=True)
        (reports / name / "report.json").write_text((FIXTURES / f"report_{name}.json").read_text())
    page = tmp_path / "aggregate.html"
    page.write_text(to_html(aggregate([reports])), encoding="utf-8")
    dom, messages, img = load(page, tmp_path)
    assert messages == []
    assert 'data-plots-total="3"' in dom and 'data-plots-loaded="3"' in dom
    # The parameter bars fill thousands of pixels in both colours (the two kMAC/px plots alone, with
    # empty bars, give about 1000 each); a page without plots has none.
    assert colour_pixels(img, PLOT_COLOURS[0]) > 5000 and colour_pixels(img, PLOT_COLOURS[1]) > 5000


def test_free_text_and_unfinished_run_in_browser(tmp_path):
    """report_acme.json: names that are markup and a formula, an error with `<b>`: the page shows them
    as text (no element made of them), says the run did not finish, and logs nothing."""
    page = tmp_path / "acme.html"
    page.write_text(html.render(read_report(FIXTURES / "report_acme.json")), encoding="utf-8")
    dom = chromium(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0 and console_messages(dom.stderr) == []
    assert "<h1>Acme [v2] (main) — =cmd|' /C calc'!A0</h1>" in dom.stdout
    assert "&lt;b&gt;bold&lt;/b&gt;" in dom.stdout and "<b>bold</b>" not in dom.stdout
    assert 'id="incomplete"' in dom.stdout
