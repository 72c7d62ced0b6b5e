"""The command adapter (profiler/adapters/command.py): codecs that are programs."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from profiler.adapters.command import CommandError, build, is_python
from profiler.counting import count_call

ROOT = Path(__file__).resolve().parent.parent


def _rate(tmp_path, encode, decode, **extra):
    return SimpleNamespace(index=0, target_bpp=0.25, weights=None, state_dict=None, directory=tmp_path,
                           options={"encode": encode, "decode": decode, **extra})


def _picture(h=24, w=40) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.randint(0, 256, (1, 3, h, w), generator=g).float().div(255)


def test_a_non_python_program_is_timed_and_not_counted(tmp_path):
    # cp as a lossless "codec": the bitstream is the PNG the suite wrote, the decoded picture that PNG again.
    codec = build(_rate(tmp_path, ["cp", "{input}", "{bitstream}"], ["cp", "{bitstream}", "{output}"]), "cpu")
    x = _picture()
    bits, count = codec.count_encode(x)
    assert bits.startswith(b"\x89PNG") and count is None
    x_hat, count = codec.count_decode(bits)
    assert count is None and torch.equal(x_hat, x)          # 8-bit input: the PNG round trip is exact
    assert "cp is not a Python interpreter" in codec.macs_not_counted["encode"]
    assert "declared" in codec.params_not_measured            # no weights: not measured, never 0
    assert [r["part"] for r in codec.runs] == ["encode", "decode"]
    assert all(r["wall_s"] > 0 and r["maxrss_mib"] > 0 for r in codec.runs)


def test_placeholders_are_filled(tmp_path):
    script = tmp_path / "args.py"
    script.write_text("import sys, shutil\nopen(sys.argv[2], 'w').write(' '.join(sys.argv[3:]))\n")
    codec = build(_rate(tmp_path, ["{python}", "args.py", "{input}", "{bitstream}", "{target_bpp}",
                                   "{target_bpp_x100}", "{width}", "{height}"],
                        ["cp", "{bitstream}", "{output}"]), "cpu")
    assert codec.encode(_picture(24, 40)) == b"0.25 25 40 24"


def test_a_failing_command_names_itself_with_its_stderr(tmp_path):
    (tmp_path / "bad.py").write_text("import sys\nprint('no model here', file=sys.stderr)\nsys.exit(3)\n")
    codec = build(_rate(tmp_path, ["{python}", "bad.py", "{input}"], ["cp", "{bitstream}", "{output}"]), "cpu")
    with pytest.raises(CommandError, match="exited with status 3") as exc:
        codec.encode(_picture())
    assert "no model here" in str(exc.value)


def test_a_hanging_command_is_killed_at_its_timeout(tmp_path):
    codec = build(_rate(tmp_path, ["sleep", "30"], ["cp", "{bitstream}", "{output}"], timeout_s=0.5), "cpu")
    with pytest.raises(CommandError, match="timed out after 0.5 s"):
        codec.encode(_picture())
    assert codec.runs[-1]["wall_s"] < 10


def test_a_wrong_size_output_is_refused(tmp_path):
    (tmp_path / "dec.py").write_text("import sys\nfrom PIL import Image\nImage.new('RGB', (5, 5)).save(sys.argv[1])\n")
    codec = build(_rate(tmp_path, ["cp", "{input}", "{bitstream}"], ["{python}", "dec.py", "{output}"]), "cpu")
    bits = codec.encode(_picture(24, 40))
    with pytest.raises(ValueError, match="5×5, expected 40×24"):
        codec.decode(bits)


def test_declared_weights_are_the_parameters(tmp_path):
    rate = _rate(tmp_path, ["cp", "{input}", "{bitstream}"], ["cp", "{bitstream}", "{output}"])
    rate.state_dict = {"conv.weight": torch.zeros(4, 3, 3, 3), "conv.bias": torch.zeros(4)}
    codec = build(rate, "cpu")
    assert codec.params_not_measured is None
    assert sum(p.numel() for p in codec.decoder.parameters()) == 4 * 27 + 4


def test_python_detection():
    assert is_python("{python}") and is_python("python3") and is_python("/usr/bin/python3.11")
    assert not is_python("cjpeg") and not is_python("pythonista")


@pytest.mark.slow
def test_refnet_as_programs_equals_refnet_in_process():
    """submissions/refnet-cli through the adapter: the injected counter's MACs, the bitstream and the decoded
    picture equal the in-process RefNet's on one small picture."""
    from profiler.images import builtin_image
    from profiler.submission import load_submission, with_weights

    cli = load_submission(ROOT / "submissions" / "refnet-cli")
    prog = build(cli.rate(0.25), "cpu")
    assert prog.macs_not_counted == {"encode": None, "decode": None}
    x = builtin_image("chelsea").tensor()[..., 100:164, 100:196]
    bits, enc = prog.count_encode(x)
    x_prog, dec = prog.count_decode(bits)

    ref = load_submission(ROOT / "submissions" / "refnet")
    sys.path.insert(0, str(ref.directory))
    sys.modules.pop("codec", None)          # another submission's `codec` imported earlier in this process
    try:
        import codec as refnet
    finally:
        sys.path.remove(str(ref.directory))
        sys.modules.pop("codec", None)      # other tests load other submissions' `codec`
    inproc = refnet.build(with_weights(ref.rate(0.25), ref.manifest), "cpu")
    with torch.no_grad():
        bits_ref, enc_ref = count_call(lambda: inproc.encode(x), roots={"encoder": inproc.encoder}, root_name="encoder")
        x_ref, dec_ref = count_call(lambda: inproc.decode(bits_ref), roots={"decoder": inproc.decoder},
                                    root_name="decoder")
    assert bits == bits_ref
    assert enc["macs"] == enc_ref.macs > 0 and dec["macs"] == dec_ref.macs > 0
    assert enc["complete"] and dec["complete"], (enc["uncounted"], dec["uncounted"])
    assert torch.equal(x_prog, x_ref.clamp(0, 1).mul(255).round().div(255))


needs_cjpeg = pytest.mark.skipif(shutil.which("cjpeg") is None or shutil.which("djpeg") is None,
                                 reason="libjpeg-turbo-progs not installed (the README's set-up installs it)")


@needs_cjpeg
def test_jpeg_anchor_meets_the_rate_and_is_not_counted():
    from profiler.images import builtin_image
    from profiler.quality import psnr_rgb
    from profiler.submission import load_submission

    sub = load_submission(ROOT / "submissions" / "jpeg")
    x = builtin_image("chelsea").tensor()[..., :128, :192]
    codec = build(sub.rate(0.5), "cpu")
    bits, count = codec.count_encode(x)
    assert count is None and "sh is not a Python interpreter" in codec.macs_not_counted["encode"]
    assert bits[:2] == b"\xff\xd8"                                       # a JPEG file
    assert 0.4 < 8 * len(bits) / (192 * 128) <= 0.5                      # the quality search meets the target
    x_hat = codec.decode(bits)
    assert x_hat.shape == x.shape and 24 < psnr_rgb(x, x_hat) < 40


@needs_cjpeg
@pytest.mark.slow
def test_a_program_codecs_report_keeps_whole_process_figures_apart(tmp_path):
    from profiler.cli import main

    rc = main([str(ROOT / "submissions" / "jpeg"), "--quick", "--device", "cpu", "--out", str(tmp_path)])
    assert rc == 0
    rep = json.loads((tmp_path / "report.json").read_text())
    (r,) = rep["rates"]
    (p,) = r["images"]
    assert set(p["process"]) == {"encode", "decode"} and p["process"]["decode"]["peak_rss_mib"] > 0
    assert p["process"]["encode"]["timing"]["median_s"] > 0
    assert "cpu" not in p["timing"] and "cpu" not in p["memory"]         # never in the in-process columns
    assert r["params"] is None and r["not_measured"]["params"]["code"] == "not-available"
    assert r["not_measured"]["macs_decode"]["code"] == "not-available"
    assert not p["counts"]["decoder"]["complete"] and p["bpp"] <= 0.25
