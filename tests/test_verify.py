"""`profile --write-bitstreams` and `jpegai-profile verify` (profiler/delivery.py, cli/verify.py)."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from profiler.cli import main
from profiler.delivery import check_model, difference, model_listing, parse_rate, read_decoded, scan
from profiler.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
REFNET = ROOT / "submissions" / "refnet"


# -- the delivery, by hand ---------------------------------------------------------------------------------

def test_rate_folders_are_decimals():
    assert parse_rate("0.25") == parse_rate("0.250") == parse_rate(".25") == 0.25
    assert parse_rate("1") == 1.0 and parse_rate("0.25x") is None and parse_rate("-1") is None


def test_scan_names_unknown_folders_and_stray_files(tmp_path):
    (tmp_path / ".25").mkdir()
    (tmp_path / ".25" / "cat.bin").write_bytes(b"x")
    (tmp_path / ".25" / "cat.png").write_bytes(b"x")
    (tmp_path / ".25" / "notes.txt").write_text("hi")
    (tmp_path / "0.7").mkdir()
    (tmp_path / "README").write_text("hi")
    folders, decoded, problems = scan(tmp_path, None, ["cat"], [0.25, 0.5])
    assert folders == {0.25: tmp_path / ".25"} and decoded == {0.25: tmp_path / ".25"}
    by_file = {Path(p["file"]).name: p["message"] for p in problems}
    assert set(by_file) == {"notes.txt", "0.7", "README"}
    assert by_file["0.7"].startswith("unknown rate folder") and by_file["notes.txt"].startswith("stray file")


def _png16(path: Path, w: int, h: int) -> None:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""
    raw = b"".join(b"\0" + b"\0\1" * 3 * w for _ in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_decoded_pictures_must_be_8_bit_rgb_of_the_originals_size(tmp_path):
    _png16(tmp_path / "deep.png", 4, 3)
    with pytest.raises(ValueError, match="16-bit RGB PNG, expected 8-bit RGB"):
        read_decoded(tmp_path / "deep.png", 4, 3)
    Image.new("RGB", (4, 3)).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="4×3, the original is 8×3"):
        read_decoded(tmp_path / "small.png", 8, 3)
    Image.new("L", (4, 3)).save(tmp_path / "grey.png")
    with pytest.raises(ValueError, match="8-bit grey"):
        read_decoded(tmp_path / "grey.png", 4, 3)
    (tmp_path / "cut.png").write_bytes((tmp_path / "small.png").read_bytes()[:20])
    with pytest.raises(ValueError, match="not a PNG"):
        read_decoded(tmp_path / "cut.png", 4, 3)


def test_difference_by_hand():
    a = np.zeros((2, 5, 3), np.uint8)
    b = a.copy()
    b[1, 2, 0] = 3                                   # one sample off by 3 of 30
    diff, psnr = difference(a, b)
    assert diff == 3 and psnr == pytest.approx(10 * np.log10(255 ** 2 / (9 / 30)))
    assert difference(a, a) == (0, float("inf"))


def test_model_hashes(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "a.py").write_text("x = 1\n")
    (sub / "w.bin").write_bytes(b"\0" * 10)
    listing = tmp_path / "model.sha256"
    listing.write_text(model_listing(sub))
    assert check_model(sub, listing)["matched"]
    (sub / "w.bin").write_bytes(b"\0" * 11)
    (sub / "new.py").write_text("")
    got = check_model(sub, listing)
    assert not got["matched"] and got["listed"] == 2
    assert [p.split(":")[0] for p in got["problems"]] == ["w.bin", "new.py"]
    listing.write_text("not a hash line\n")
    with pytest.raises(InputError, match="line 1"):
        check_model(sub, listing)


# -- end to end: a delivery made by the suite, verified, then tampered with ----------------------------------

@pytest.fixture(scope="module")
def delivery(tmp_path_factory):
    """RefNet's delivery of two small originals at two rates, written by `profile --write-bitstreams`."""
    from profiler.images import builtin_image

    tmp = tmp_path_factory.mktemp("delivery")
    orig = tmp / "originals"
    orig.mkdir()
    px = builtin_image("chelsea").pixels
    Image.fromarray(px[60:188, 40:232].copy()).save(orig / "cat.png")      # 192×128
    Image.fromarray(px[150:214, 200:328].copy()).save(orig / "fur.png")    # 128×64
    text = (ROOT / "profiler" / "profile.toml").read_text()
    text = text.replace("target_rates = [0.03, 0.06, 0.12, 0.25, 0.50, 0.75, 1.00, 1.50, 2.00]",
                        "target_rates = [0.25, 0.50]")
    text = text.replace("resolutions = [[1920, 1080], [3840, 2160]]", "resolutions = []")
    text = text.replace("repeats = 3", "repeats = 1")
    # two rate points are too few for a BD-rate curve: that rule is not what is tested here
    start = text.index('[[rules]]\nid = "interop.bdrate"')
    text = text[:start] + text[text.index("[[rules]]", start + 5):]
    cfg = tmp / "profile.toml"
    cfg.write_text(text)
    bits = tmp / "bitstreams"
    rc = main([str(REFNET), "--config", str(cfg), "--images", str(orig), "--rates", "0.25,0.5", "--device", "cpu",
               "--out", str(tmp / "profile"), "--write-bitstreams", str(bits)])
    assert rc in (0, 1)
    listing = tmp / "model.sha256"
    listing.write_text(model_listing(REFNET))
    return {"tmp": tmp, "cfg": cfg, "orig": orig, "bits": bits, "listing": listing,
            "profile": json.loads((tmp / "profile" / "report.json").read_text())}


def _verify(d, bits: Path, out: Path, listing: Path, capsys) -> tuple[int, dict, str]:
    rc = main(["verify", str(REFNET), "--bitstreams", str(bits), "--originals", str(d["orig"]), "--config",
               str(d["cfg"]), "--device", "cpu", "--out", str(out), "--model-sha256", str(listing), "--json"])
    captured = capsys.readouterr()
    return rc, json.loads(captured.out), captured.err


def _failed_rates(out: Path) -> list:
    """What the report says about each failed rate point (its error and the worker's last lines), so that
    a failure seen only on CI can be read from CI's log."""
    rep = json.loads((out / "report.json").read_text())
    return [(r["target_bpp"], r.get("error")) for r in rep["rates"] if r.get("status") == "failed"]


def _rule(data: dict, rid: str) -> dict:
    return next(r for r in data["rules"] if r["id"] == rid)


@pytest.mark.slow
def test_write_bitstreams_writes_the_layout(delivery):
    bits, prof = delivery["bits"], delivery["profile"]
    assert sorted(str(p.relative_to(bits)) for p in bits.rglob("*") if p.is_file()) == [
        "0.25/cat.bin", "0.25/cat.png", "0.25/fur.bin", "0.25/fur.png",
        "0.5/cat.bin", "0.5/cat.png", "0.5/fur.bin", "0.5/fur.png"]
    for r in prof["rates"]:
        folder = bits / f"{r['target_bpp']:g}"
        for p in r["images"]:
            data = (folder / f"{p['name']}.bin").read_bytes()
            assert len(data) == p["bytes"] and p["bpp"] == 8 * len(data) / (p["width"] * p["height"])
            with Image.open(folder / f"{p['name']}.png") as im:
                assert im.mode == "RGB" and im.size == (p["width"], p["height"])
                import hashlib
                assert hashlib.sha256(np.asarray(im).transpose(2, 0, 1).tobytes()).hexdigest() == p["decoded_sha256"]


@pytest.mark.slow
def test_verify_passes_the_delivery_and_names_each_tampered_item(delivery, capsys):
    d = delivery
    rc, data, _ = _verify(d, d["bits"], d["tmp"] / "v-ok", d["listing"], capsys)
    assert rc == 0, ([(r["id"], r["measured"]) for r in data["rules"] if r["status"] != "pass"],
                     _failed_rates(d["tmp"] / "v-ok"))
    for rid in ("bitstreams.complete", "decoded.match", "encoder.match", "model.match"):
        assert _rule(data, rid)["status"] == "pass"
    items = {(i["original"], i["target_bpp"]): i for i in data["items"]}
    assert len(items) == 4 and all(i["decoded_bit_exact"] and i["encoder_identical"] for i in items.values())
    # bpp from the delivered file's size and the original's W×H, by hand
    size = (d["bits"] / "0.25" / "cat.bin").stat().st_size
    assert items[("cat", 0.25)]["bytes"] == size and items[("cat", 0.25)]["bpp"] == 8 * size / (192 * 128)
    rep = json.loads((d["tmp"] / "v-ok" / "report.json").read_text())
    assert rep["verification"]["worst_case"].startswith("the submitted bitstreams")
    assert rep["summary"]["kmac_px_decoder_worst"] > 0 and all(not r["resolutions"] for r in rep["rates"])
    # the untimed steps of the submitted bitstreams are recorded as a profile's are (quality on each item)
    assert all(r["untimed"]["quality"]["calls"] == 2 for r in rep["rates"])

    # Tampered: one decoded picture (a known pixel difference), one bitstream's size (one byte cut: the
    # decoder refuses it), one bitstream's bytes (same size), one file of the model.
    bad = d["tmp"] / "tampered"
    shutil.copytree(d["bits"], bad)
    png = bad / "0.25" / "cat.png"
    arr = np.asarray(Image.open(png)).copy()
    arr[5, 7, 1] = arr[5, 7, 1] + 4 if arr[5, 7, 1] < 250 else arr[5, 7, 1] - 4
    Image.fromarray(arr).save(png)
    cut = bad / "0.5" / "cat.bin"
    cut.write_bytes(cut.read_bytes()[:-1])
    flip = bad / "0.25" / "fur.bin"
    data_ = bytearray(flip.read_bytes())
    data_[-1] ^= 0x01
    flip.write_bytes(bytes(data_))
    listing = d["tmp"] / "model-bad.sha256"
    lines = d["listing"].read_text().splitlines()
    lines[0] = "0" * 64 + lines[0][64:]
    listing.write_text("\n".join(lines) + "\n")
    rc, data, err = _verify(d, bad, d["tmp"] / "v-bad", listing, capsys)
    assert rc == 1
    items = {(i["original"], i["target_bpp"]): i for i in data["items"]}
    assert items[("cat", 0.25)]["decoded_max_abs_diff"] == 4 and not items[("cat", 0.25)]["decoded_bit_exact"]
    assert items[("cat", 0.25)]["decoded_psnr_db"] == pytest.approx(10 * np.log10(255 ** 2 / (16 / (192 * 128 * 3))))
    assert items[("cat", 0.5)]["bytes"] == (d["bits"] / "0.5" / "cat.bin").stat().st_size - 1
    assert not items[("cat", 0.5)]["decoded_ok"] and str(cut) in items[("cat", 0.5)]["problems"][0]
    assert items[("fur", 0.25)]["encoder_identical"] is False
    assert items[("fur", 0.5)]["decoded_bit_exact"] and items[("fur", 0.5)]["encoder_identical"]
    dm, em, mm = (_rule(data, r) for r in ("decoded.match", "encoder.match", "model.match"))
    assert dm["status"] == em["status"] == mm["status"] == "fail"
    mismatch = dm["details"]["mismatch"]        # the flipped bytes decode to another picture, too
    assert [m.split(":")[0] for m in mismatch] == ["cat at 0.25 bpp", "fur at 0.25 bpp", "cat at 0.5 bpp"]
    assert mismatch[0].startswith("cat at 0.25 bpp: largest difference 4 code values")
    assert [m.split(":")[0] for m in em["details"]["mismatch"]] == ["fur at 0.25 bpp", "cat at 0.5 bpp"]
    assert lines[0][66:] in mm["measured"]
    assert f"cat at 0.5 bpp: {cut}" in err                     # one line naming the file, on stderr
