"""`jpegai-profile anchors --bitstreams`: an official anchor delivery (the evaluator's layout) read into an
anchor report, no program run.

The deliveries are made here from real cjpeg/djpeg and opj_compress/opj_decompress output on a small crop
of a built-in picture; the figures are checked against values computed here from the files themselves
(bpp from the byte count, PSNR-Y and PSNR-RGB by hand), never against the tool's own output."""

import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from profiler.images import builtin_image
from profiler.model.io import read_report
from profiler.model.report import NotMeasuredCode

from conftest import one_line_error

TARGETS = (0.25, 0.5, 1.0, 2.0)          # four rate points: enough for a BD-rate
JPEG_QUALITY = (8, 25, 60, 90)
J2K_RATIO = (96, 48, 24, 12)             # opj_compress -r: compression ratios, high to low
W, H = 224, 176                          # ≥ 161 a side: MS-SSIM and IW-SSIM are defined


def _needs(*programs):
    missing = [p for p in programs if shutil.which(p) is None]
    return pytest.mark.skipif(bool(missing) and not os.environ.get("CI"),
                              reason=f"{', '.join(missing)} not installed (the README's set-up installs them)")


def _originals(tmp: Path) -> tuple[Path, np.ndarray]:
    crop = np.ascontiguousarray(builtin_image("chelsea").pixels[40:40 + H, 100:100 + W])
    folder = tmp / "originals"
    folder.mkdir()
    Image.fromarray(crop).save(folder / "crop.png")
    return folder, crop


def _jpeg(src: Path, bits: Path, png: Path, k: int) -> None:
    ppm = src.parent.parent / "crop.ppm"          # Debian's cjpeg reads PPM, not PNG (and not beside the originals)
    Image.open(src).save(ppm, "PPM")
    subprocess.run(["cjpeg", "-quality", str(JPEG_QUALITY[k]), "-outfile", str(bits), str(ppm)], check=True)
    out = png.with_suffix(".ppm")
    subprocess.run(["djpeg", "-outfile", str(out), str(bits)], check=True)
    Image.open(out).convert("RGB").save(png)
    out.unlink()


def _j2k(src: Path, bits: Path, png: Path, k: int) -> None:
    j2k = bits.with_suffix(".j2k")
    subprocess.run(["opj_compress", "-i", str(src), "-o", str(j2k), "-r", str(J2K_RATIO[k])], check=True,
                   capture_output=True)
    subprocess.run(["opj_decompress", "-i", str(j2k), "-o", str(png)], check=True, capture_output=True)
    j2k.rename(bits)


def _deliver(tmp: Path, originals: Path, coder, name: str, decoded: bool = True) -> Path:
    root = tmp / name
    for k, t in enumerate(TARGETS):
        folder = root / f"{t:g}"
        folder.mkdir(parents=True)
        coder(originals / "crop.png", folder / "crop.bin", folder / "crop.png", k)
        if not decoded:
            (folder / "crop.png").unlink()
    return root


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0 ** 2 / mse)


def _luma(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float64)
    return 0.2126 * x[..., 0] + 0.7152 * x[..., 1] + 0.0722 * x[..., 2]


def _anchors(*args) -> int:
    from profiler.cli import main

    return main(["anchors", *map(str, args)])


@_needs("cjpeg", "djpeg", "opj_compress", "opj_decompress")
def test_a_delivery_of_real_jpeg_and_jpeg2000_output_becomes_an_anchor_report(tmp_path, capsys):
    originals, crop = _originals(tmp_path)
    deliveries = {"JPEG (official)": _deliver(tmp_path, originals, _jpeg, "jpeg-delivery"),
                  "JPEG 2000 (official)": _deliver(tmp_path, originals, _j2k, "j2k-delivery")}
    out = tmp_path / "anchors"
    for name, root in deliveries.items():
        assert _anchors("--bitstreams", root, "--name", name, "--substitute-for", name.split(" (")[0],
                        "--originals", originals, "--out", out) == 0, capsys.readouterr()
    reports = {r.submission.codec: r for r in (read_report(p) for p in sorted(out.rglob("report.json")))}
    assert set(reports) == set(deliveries)
    for name, root in deliveries.items():
        report = reports[name]
        assert report.anchor is not None and report.anchor.substitute_for == name.split(" (")[0]
        assert report.not_measured["complexity"].code == NotMeasuredCode.NOT_APPLICABLE
        assert [r.target_bpp for r in report.rates] == list(TARGETS)
        for r in report.rates:
            (pic,) = r.images
            bits = root / f"{r.target_bpp:g}" / "crop.bin"
            dec = np.asarray(Image.open(root / f"{r.target_bpp:g}" / "crop.png").convert("RGB"))
            assert (pic.width, pic.height, pic.bytes) == (W, H, bits.stat().st_size)
            assert pic.bpp == pytest.approx(8 * bits.stat().st_size / (W * H), rel=1e-12)
            assert pic.quality["psnr_y"] == pytest.approx(_psnr(_luma(crop), _luma(dec)), abs=1e-9)
            assert pic.psnr_rgb == pytest.approx(_psnr(crop, dec), abs=1e-9)
            assert pic.quality["ms_ssim_y"] is not None and 0 < pic.quality["ms_ssim_y"] < 1
            assert r.not_measured["macs_decode"].code == NotMeasuredCode.NOT_APPLICABLE
            assert not r.timing and not pic.timing and not pic.counts["decoder"].complete
        # the quality rises with the rate, as the coders were told
        assert [r.images[0].bpp for r in report.rates] == sorted(r.images[0].bpp for r in report.rates)
    # Reusable by `profile --anchors`: found as anchor reports, and a BD-rate of one against the other.
    from profiler.bdrate import compare
    from profiler.cli.profile import load_anchors

    assert sorted(r.submission.codec for _, r in load_anchors(out)) == sorted(deliveries)
    bd = compare(reports["JPEG 2000 (official)"], reports["JPEG (official)"])
    psnr_y = next(m for m in bd.metrics if m.metric == "psnr_y")
    assert psnr_y.mean_percent is not None and math.isfinite(psnr_y.mean_percent), psnr_y
    assert (out / "jpeg-official" / "table.md").is_file()


@_needs("cjpeg", "djpeg")
def test_a_delivery_without_decoded_pictures_has_rates_and_no_metrics(tmp_path, capsys):
    originals, _ = _originals(tmp_path)
    root = _deliver(tmp_path, originals, _jpeg, "bits-only", decoded=False)
    out = tmp_path / "anchors"
    assert _anchors("--bitstreams", root, "--name", "JPEG", "--substitute-for", "JPEG XT",
                    "--originals", originals, "--out", out) == 0, capsys.readouterr()
    report = read_report(out / "jpeg" / "report.json")
    for r in report.rates:
        (pic,) = r.images
        assert pic.bpp == pytest.approx(8 * (root / f"{r.target_bpp:g}" / "crop.bin").stat().st_size / (W * H))
        assert pic.psnr_rgb is None and pic.quality == {}
        assert r.not_measured["quality"].code == NotMeasuredCode.NOT_AVAILABLE


def _small_delivery(tmp: Path) -> tuple[Path, Path]:
    """A delivery of made-up bytes (no program needed): one rate folder, bitstream and decoded picture."""
    originals, crop = _originals(tmp)
    root = tmp / "delivery"
    (root / "0.5").mkdir(parents=True)
    (root / "0.5" / "crop.bin").write_bytes(b"\x01" * 1000)
    Image.fromarray(crop).save(root / "0.5" / "crop.png")
    return root, originals


def _bad(capsys, tmp: Path, root: Path, originals: Path, file_part, words: str) -> None:
    line = one_line_error(capsys, ["anchors", "--bitstreams", str(root), "--name", "X", "--substitute-for", "Y",
                                   "--originals", str(originals), "--out", str(tmp / "out")], file_part, None, words)
    assert "Traceback" not in line
    assert not (tmp / "out" / "x" / "report.json").exists()


def test_a_stray_file_is_one_line_naming_it(tmp_path, capsys):
    root, originals = _small_delivery(tmp_path)
    (root / "0.5" / "notes.txt").write_text("hi")
    _bad(capsys, tmp_path, root, originals, root / "0.5" / "notes.txt", "stray file")


def test_an_unknown_rate_folder_is_one_line_naming_it(tmp_path, capsys):
    root, originals = _small_delivery(tmp_path)
    (root / "0.3").mkdir()
    _bad(capsys, tmp_path, root, originals, root / "0.3", "unknown rate folder")


def test_a_missing_bitstream_is_one_line_naming_it(tmp_path, capsys):
    root, originals = _small_delivery(tmp_path)
    Image.fromarray(builtin_image("chelsea").pixels[:64, :64]).save(originals / "other.png")
    _bad(capsys, tmp_path, root, originals, root / "0.5" / "other.bin", "missing")


def test_an_empty_bitstream_is_one_line_naming_it(tmp_path, capsys):
    root, originals = _small_delivery(tmp_path)
    (root / "0.5" / "crop.bin").write_bytes(b"")
    _bad(capsys, tmp_path, root, originals, root / "0.5" / "crop.bin", "empty bitstream")


def test_a_decoded_picture_of_the_wrong_size_is_one_line_naming_it(tmp_path, capsys):
    root, originals = _small_delivery(tmp_path)
    Image.fromarray(np.zeros((H, W - 1, 3), np.uint8)).save(root / "0.5" / "crop.png")
    _bad(capsys, tmp_path, root, originals, root / "0.5" / "crop.png", f"{W - 1}×{H}, the original is {W}×{H}")


def test_a_16_bit_decoded_picture_is_one_line_naming_it(tmp_path, capsys):
    root, originals = _small_delivery(tmp_path)
    Image.fromarray(np.zeros((H, W), np.uint16)).save(root / "0.5" / "crop.png")
    _bad(capsys, tmp_path, root, originals, root / "0.5" / "crop.png", "16-bit")


def test_bitstreams_need_a_name_and_the_anchor_it_is(tmp_path, capsys):
    root, originals = _small_delivery(tmp_path)
    one_line_error(capsys, ["anchors", "--bitstreams", str(root), "--substitute-for", "Y"], "command line",
                   "--name", "is needed")
    one_line_error(capsys, ["anchors", "--bitstreams", str(root), "--name", "X"], "command line",
                   "--substitute-for", "is needed")
    one_line_error(capsys, ["anchors", "--name", "X"], "command line", "--name", "only goes with --bitstreams")


def test_rates_selects_rate_folders_and_names_one_that_is_not_delivered(tmp_path, capsys):
    root, originals = _small_delivery(tmp_path)
    (root / "1").mkdir()
    (root / "1" / "crop.bin").write_bytes(b"\x02" * 3000)
    out = tmp_path / "out"
    assert _anchors("--bitstreams", root, "--name", "X", "--substitute-for", "Y", "--originals", originals,
                    "--rates", "1", "--out", out) == 0, capsys.readouterr()
    report = read_report(out / "x" / "report.json")
    assert [(r.target_bpp, r.images[0].bytes) for r in report.rates] == [(1.0, 3000)]
    assert report.rates[0].images[0].bpp == pytest.approx(8 * 3000 / (W * H))
    one_line_error(capsys, ["anchors", "--bitstreams", str(root), "--name", "X", "--substitute-for", "Y",
                            "--originals", str(originals), "--rates", "0.25", "--out", str(out)],
                   "command line", "--rates", "no rate folder for 0.25 bpp")


def test_decoded_pictures_in_their_own_folder(tmp_path, capsys):
    """--decoded DECODED/<target>/<stem>.png, apart from the bitstreams: the metrics are of those pictures."""
    root, originals = _small_delivery(tmp_path)
    crop = np.asarray(Image.open(root / "0.5" / "crop.png").convert("RGB"))
    (root / "0.5" / "crop.png").unlink()
    decoded = tmp_path / "decoded" / "0.50"            # 0.50 and 0.5 are one rate
    decoded.mkdir(parents=True)
    dec = crop.copy()
    dec[::3, ::2, 1] = np.clip(dec[::3, ::2, 1].astype(int) + 7, 0, 255).astype(np.uint8)
    Image.fromarray(dec).save(decoded / "crop.png")
    out = tmp_path / "out"
    assert _anchors("--bitstreams", root, "--decoded", tmp_path / "decoded", "--name", "X", "--substitute-for", "Y",
                    "--originals", originals, "--out", out) == 0, capsys.readouterr()
    (r,) = read_report(out / "x" / "report.json").rates
    assert r.images[0].quality["psnr_y"] == pytest.approx(_psnr(_luma(crop), _luma(dec)), abs=1e-9)
    assert r.images[0].bpp == pytest.approx(8 * 1000 / (W * H))


def test_a_missing_delivery_folder_is_one_line_and_writes_nothing(tmp_path, capsys):
    originals, _ = _originals(tmp_path)
    one_line_error(capsys, ["anchors", "--bitstreams", str(tmp_path / "nope"), "--name", "X", "--substitute-for", "Y",
                            "--originals", str(originals), "--out", str(tmp_path / "out")],
                   tmp_path / "nope", "--bitstreams", "folder not found")
    assert not (tmp_path / "out").exists()
