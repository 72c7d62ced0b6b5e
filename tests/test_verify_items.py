"""A delivery's items fail one by one (issue 13): `check --bitstreams`, and a decoder that crashes or hangs
on one submitted bitstream fails that item only (profiler/runner.py `run_delivery_rate`). Small fixture
codecs (tests/codecs/tiny, decoder_crashes, decoder_hangs) on three 48×32 originals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from profiler.cli import main

from conftest import CODECS

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("a", "b", "c")


def _config(tmp: Path, timeout_s: float = 1800) -> Path:
    text = (ROOT / "profiler" / "profile.toml").read_text()
    text = text.replace("target_rates = [0.03, 0.06, 0.12, 0.25, 0.50, 0.75, 1.00, 1.50, 2.00]",
                        "target_rates = [0.5, 1.0]")
    text = text.replace("resolutions = [[1920, 1080], [3840, 2160]]", "resolutions = []")
    text = text.replace("repeats = 3", "repeats = 1")
    text = text.replace("timeout_s = 1800", f"timeout_s = {timeout_s}")
    start = text.index('[[rules]]\nid = "interop.bdrate"')      # two rate points make no BD-rate curve
    text = text[:start] + text[text.index("[[rules]]", start + 5):]
    cfg = tmp / f"profile-{timeout_s:g}.toml"
    cfg.write_text(text)
    return cfg


@pytest.fixture(scope="module")
def tiny_delivery(tmp_path_factory):
    """tiny's delivery of three originals at 0.5 and 1 bpp, written by `profile --write-bitstreams`."""
    from profiler.images import builtin_image

    tmp = tmp_path_factory.mktemp("tiny-delivery")
    orig = tmp / "originals"
    orig.mkdir()
    px = builtin_image("chelsea").pixels
    for k, name in enumerate(NAMES):
        Image.fromarray(px[40 * k:40 * k + 32, 60:108].copy()).save(orig / f"{name}.png")     # 48×32
    cfg = _config(tmp)
    bits = tmp / "bitstreams"
    rc = main([str(CODECS / "tiny"), "--config", str(cfg), "--images", str(orig), "--device", "cpu",
               "--out", str(tmp / "profile"), "--write-bitstreams", str(bits)])
    assert rc in (0, 1)
    assert sorted(p.name for p in (bits / "0.5").iterdir()) == ["a.bin", "a.png", "b.bin", "b.png", "c.bin", "c.png"]
    return {"tmp": tmp, "cfg": cfg, "orig": orig, "bits": bits}


def _corrupted(d, which=(("b", "0.5"),)) -> Path:
    """The delivery with these bitstreams' zlib payloads cut short (tiny's decoder refuses them; the
    fixtures crash or hang on them)."""
    bad = d["tmp"] / ("corrupt-" + "-".join(f"{n}{r}" for n, r in which))
    if not bad.exists():
        shutil.copytree(d["bits"], bad)
        for name, rate in which:
            f = bad / rate / f"{name}.bin"
            f.write_bytes(f.read_bytes()[:-5])
    return bad


def _run(cmd: str, codec: Path, d, bits: Path, out: Path, capsys, cfg: Path | None = None) -> tuple[int, dict, str]:
    rc = main([cmd, str(codec), "--bitstreams", str(bits), "--originals", str(d["orig"]), "--config",
               str(cfg or d["cfg"]), "--device", "cpu", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    return rc, json.loads(captured.out), captured.err


def _items(data: dict) -> dict:
    return {(i["original"], i["target_bpp"]): i for i in data["items"]}


def _measured(item: dict) -> bool:
    return item["decoded_ok"] and item["decoded_bit_exact"] and item["encoder_identical"] and not item["problems"]


@pytest.mark.slow
def test_check_with_bitstreams_verifies_the_delivery(tiny_delivery, capsys):
    d = tiny_delivery
    rc, data, _ = _run("check", CODECS / "tiny", d, d["bits"], d["tmp"] / "check-ok", capsys)
    rules = {r["id"]: r["status"] for r in data["rules"]}
    for rid in ("bitstreams.complete", "decoded.match", "encoder.match"):
        assert rules[rid] == "pass", data["rules"]
    assert rules["model.match"] == "not measured"            # no --model-sha256 given
    items = _items(data)
    assert len(items) == 6 and all(_measured(i) for i in items.values())
    size = (d["bits"] / "1" / "c.bin").stat().st_size
    assert items[("c", 1.0)]["bytes"] == size and items[("c", 1.0)]["bpp"] == 8 * size / (48 * 32)
    rep = json.loads((d["tmp"] / "check-ok" / "report.json").read_text())
    assert rep["verification"]["bitstreams"] == str(d["bits"].resolve())
    assert rep["options"]["check"] is True
    # No CUDA here: every item says so, never a zero.
    assert all(i["gpu"] is None and i["gpu_not_measured"]["code"] == "not-requested" for i in items.values())

    # One corrupt bitstream: tiny's own decoder raises on it; that item fails, naming the file.
    bad = _corrupted(d)
    rc, data, err = _run("check", CODECS / "tiny", d, bad, d["tmp"] / "check-bad", capsys)
    assert rc == 1
    items = _items(data)
    broken = items[("b", 0.5)]
    assert not broken["decoded_ok"] and str(bad / "0.5" / "b.bin") in broken["problems"][0]
    assert all(_measured(i) for k, i in items.items() if k != ("b", 0.5))
    assert f"b at 0.5 bpp: {bad / '0.5' / 'b.bin'}" in err
    assert {r["id"]: r["status"] for r in data["rules"]}["decoded.match"] == "fail"


def test_check_delivery_options_need_bitstreams(tmp_path, capsys):
    rc = main(["check", str(CODECS / "tiny"), "--decoded", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "--decoded" in err and "only with --bitstreams" in err
    rc = main(["check", str(CODECS / "tiny"), "--bitstreams", str(tmp_path), "--images", str(tmp_path),
               "--originals", str(tmp_path)])
    assert rc == 2 and "--originals or --images, not both" in capsys.readouterr().err


def _failed_items_only(data: dict, bad: Path, word: str, failed: dict) -> None:
    """Each item of `failed` ({(original, rate): what its line says}) failed with one line naming its file
    and saying `word` (crash, timeout); every other item of the delivery was measured."""
    items = _items(data)
    assert len(items) == 6
    for (name, rate), says in failed.items():
        broken = items[(name, rate)]
        line = broken["problems"][0]
        assert line.startswith(f"{bad / f'{rate:g}' / f'{name}.bin'}: "), line
        assert word in line and "decode of this bitstream" in line and says in line, line
        assert broken["failure"] == word and not broken["decoded_ok"]
    # the other items of that rate point and of the other rate point: measured
    assert all(_measured(i) for k, i in items.items() if k not in failed), items


@pytest.mark.slow
def test_a_decoder_that_crashes_on_one_bitstream_fails_that_item_only(tiny_delivery, capsys, tmp_path):
    # decoder_crashes: a NULL read (SIGSEGV) at 0.5 bpp, os._exit(0) at 1 bpp, on a corrupt bitstream.
    d = tiny_delivery
    bad = _corrupted(d, (("b", "0.5"), ("a", "1")))
    rc, data, err = _run("verify", CODECS / "decoder_crashes", d, bad, tmp_path / "out", capsys)
    assert rc == 1
    _failed_items_only(data, bad, "crash", {("b", 0.5): "SIGSEGV (segmentation fault)",
                                            ("a", 1.0): "without writing a result"})
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["run"]["state"] == "complete"
    rates = {r["target_bpp"]: r for r in rep["rates"]}
    assert rates[0.5]["status"] == rates[1.0]["status"] == "ok"
    assert [p["name"] for p in rates[0.5]["images"]] == ["a", "c"]
    assert [p["name"] for p in rates[1.0]["images"]] == ["b", "c"]     # a crashed first: the restart measured b, c
    for rate, name in ((0.5, "b"), (1.0, "a")):
        restarts = rates[rate]["worker"]["restarts"]
        assert len(restarts) == 1 and restarts[0].startswith(f"{name}: worker ")
        assert "during the decode of this bitstream" in restarts[0]
    assert f"b at 0.5 bpp: {bad / '0.5' / 'b.bin'}" in err and f"a at 1 bpp: {bad / '1' / 'a.bin'}" in err
    assert {r["id"]: r["status"] for r in data["rules"]}["decoded.match"] == "fail"


@pytest.mark.slow
def test_a_decoder_that_hangs_on_one_bitstream_fails_that_item_only(tiny_delivery, capsys, tmp_path):
    d = tiny_delivery
    bad = _corrupted(d)
    cfg = _config(tmp_path, timeout_s=60)   # the hang waits this out once
    rc, data, _ = _run("verify", CODECS / "decoder_hangs", d, bad, tmp_path / "out", capsys, cfg)
    assert rc == 1
    _failed_items_only(data, bad, "timeout", {("b", 0.5): "timed out after 60 s"})
