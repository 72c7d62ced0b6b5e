"""The worst-case decoder and its per-module breakdown come from the same call.

`tests/codecs/attention` attends over every latent position (no weights): its decoder costs
8·P² MACs for the attention (P = W·H/64 latent positions, E = 4 channels: L·S·E + L·S·E) plus
C_in·C_out·k² = 4·3·64 per latent position for the transposed convolution. Per pixel that grows with
the picture, so the worst case is the largest counted resolution, 3840×2160, never the test picture.
"""

from __future__ import annotations

import json
import re

import pytest

from conftest import CODECS, run_cli

W, H = 3840, 2160
P = (W // 8) * (H // 8)                       # 129,600 latent positions
ATTN = 2 * P * P * 4                          # q·kᵀ and a·v, E = 4
UNPATCH = P * 4 * 3 * 8 * 8                   # per input position: C_in · C_out · k²
TOTAL = ATTN + UNPATCH


@pytest.mark.slow
def test_worst_case_at_a_resolution_is_broken_down_from_that_resolution(tmp_path):
    out = tmp_path / "out"
    res = run_cli(str(CODECS / "attention"), "--quick", "--out", str(out))
    assert res.returncode == 0, res.stderr
    report = json.loads((out / "report.json").read_text())
    # The console names the resolution and shows the attention's own cost there: 16.20 kMAC/px.
    assert re.search(r"top decoder modules at 0\.5 bpp, resolution\s+count 3840×2160", res.stdout), res.stdout
    assert re.search(r"decoder\.attn\s*│\s*16\.20", res.stdout)
    assert re.search(r"decoder\.unpatch\s*│\s*0\.01", res.stdout)
    # The HTML breakdown is that resolution's, and its rows add up to the summary's worst case.
    html = (out / "report.html").read_text()
    section = html[html.index("<h2>Worst-case decoder, per module</h2>"):]
    section = section[:section.index("</table>")]
    assert "3840×2160" in section
    assert f"<td>decoder.attn</td><td class=num>{ATTN:,}</td>" in section
    assert f"<td>decoder.unpatch</td><td class=num>{UNPATCH:,}</td>" in section
    summary = report["summary"]
    assert summary["kmac_px_decoder_worst"] == pytest.approx(TOTAL / (W * H) / 1000)
    assert summary["kmac_px_decoder_worst_at"]["width"] == W
    # 3840×2160 is a multiple of 8: coded as it is, no padding in the worst case.
    assert summary["kmac_px_decoder_worst_at"]["padding_share"] == 0.0


def test_padding_share_of_the_worst_case_by_hand(tiny_dir):
    """The tiny codec pads a 451-wide picture to 452 (even) and decodes at 452×300 before cropping:
    1 − 451·300 / (452·300) = 1/452 of its decoder MACs are spent on padding."""
    import numpy as np
    import torch

    from profiler import derive
    from profiler.conditions import TestConditions, TimingSpec
    from profiler.images import TestImage
    from profiler.model.report import RateResult
    from profiler.submission import load_entry, load_submission
    from profiler.worker import _measure_image

    from conftest import minimal_report

    sub = load_submission(tiny_dir)
    codec = load_entry(sub)(sub.rates[0], torch.device("cpu"))
    img = TestImage("odd", np.random.default_rng(0).integers(0, 256, (300, 451, 3), dtype=np.uint8))
    picture, _, _ = _measure_image(codec, img, TestConditions(timing=TimingSpec(repeats=1, warmup=1)))
    worst = derive.worst_decoder(minimal_report([RateResult(index=0, target_bpp=0.5, images=[picture])])).where
    assert (worst.coded_width, worst.coded_height) == (452, 300)
    assert worst.padding_share == pytest.approx(1 / 452, rel=1e-12)
