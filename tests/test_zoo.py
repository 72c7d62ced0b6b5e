"""The bundled CompressAI submissions and the `--zoo` one-liner."""

import json

import pytest

from profiler.adapters.compressai import ARCHITECTURES
from profiler.conditions import load_conditions
from profiler.errors import InputError
from profiler.submission import load_submission
from profiler.zoo import rate_points, write_submission

from conftest import ROOT, run_cli

pytest.importorskip("compressai")

SUBMISSIONS = ROOT / "submissions"
JPEG_AI_RATES = [0.03, 0.06, 0.12, 0.25, 0.50, 0.75, 1.00, 1.50, 2.00]
BUNDLED = {"bmshj2018-hyperprior": "bmshj2018-hyperprior", "mbt2018": "mbt2018",
           "cheng2020-checkerboard": "cheng2020-anchor-checkerboard"}


@pytest.mark.parametrize("directory", BUNDLED)
def test_bundled_manifests_follow_the_adapters_mapping(directory):
    sub = load_submission(SUBMISSIONS / directory)
    arch = ARCHITECTURES[BUNDLED[directory]]
    assert [r.target_bpp for r in sub.rates] == JPEG_AI_RATES
    assert JPEG_AI_RATES == list(load_conditions(None).target_rates)
    for r in sub.rates:
        assert r.options == {"arch": arch.name, "quality": arch.quality_for_target[r.target_bpp]}
    assert sub.entry == "profiler.adapters.compressai:build"
    assert (SUBMISSIONS / directory / "README.md").is_file()


def test_rate_points_of_the_one_liner():
    mbt = ARCHITECTURES["mbt2018"]
    assert rate_points(mbt, None) == [(0.03, 1), (0.06, 1), (0.12, 1), (0.25, 2), (0.5, 4), (0.75, 5),
                                      (1.0, 6), (1.5, 7), (2.0, 8)]
    # A quality at its lowest mapped target; quality 3 is unmapped: between 0.25 (q2) and 0.5 (q4),
    # sqrt(0.25 · 0.5) = 0.35355… → 0.354.
    assert rate_points(mbt, [1, 2, 3]) == [(0.03, 1), (0.25, 2), (0.354, 3)]
    cheng = ARCHITECTURES["cheng2020-anchor-checkerboard"]
    assert rate_points(cheng, [6, 3]) == [(0.354, 3), (1.0, 6)]


def test_written_manifest_is_a_valid_submission(tmp_path):
    weights = tmp_path / "bmshj2018-hyperprior-2-e8.pth.tar"   # CompressAI's checkpoint naming
    import torch

    torch.save({"w": torch.zeros(2)}, weights)   # a safe, loadable file: the manifest loader opens it
    d = write_submission(tmp_path / "sub", "bmshj2018-hyperprior", "2", "ms-ssim", weights)
    sub = load_submission(d)
    assert sub.codec == "bmshj2018-hyperprior" and sub.entry == "profiler.adapters.compressai:build"
    assert [(r.target_bpp, r.options) for r in sub.rates] == [
        (0.25, {"arch": "bmshj2018-hyperprior", "quality": 2, "metric": "ms-ssim"})]
    assert sub.rates[0].weights == (d / "weights" / "q2.pth").resolve()
    assert sub.rates[0].weights.read_bytes() == weights.read_bytes()


@pytest.mark.parametrize("args, field, message", [
    (("mbt2019", None), "--zoo", "unknown architecture 'mbt2019'"),
    (("mbt2018", "9"), "--quality", "mbt2018 has qualities 1–8"),
    (("mbt2018", "a,b"), "--quality", "expected comma-separated integers"),
])
def test_bad_one_liner_values_name_the_option(tmp_path, args, field, message):
    with pytest.raises(InputError) as exc:
        write_submission(tmp_path / "sub", *args)
    assert exc.value.field == field and message in exc.value.message
    assert not (tmp_path / "sub").exists()


def test_weights_need_exactly_one_quality(tmp_path):
    w = tmp_path / "w.pth"
    w.write_bytes(b"x")
    with pytest.raises(InputError, match="give exactly one --quality"):
        write_submission(tmp_path / "sub", "mbt2018", "1,2", "mse", w)


def test_cli_unknown_zoo_model_is_one_line_exit_2(tmp_path):
    proc = run_cli("--zoo", "mbt2019", "--quick", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "jpegai-profile: error: command line: --zoo: unknown architecture 'mbt2019' (known: "
        + ", ".join(ARCHITECTURES) + ")"]


def _report(out):
    return json.loads((out / "report.json").read_text())


@pytest.mark.slow
def test_zoo_one_liner_profiles_and_leaves_its_manifest(tmp_path):
    proc = run_cli("--zoo", "cheng2020-anchor-checkerboard", "--quality", "2", "--quick", "--device", "cpu",
                   "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = _report(tmp_path)
    (rate,) = rep["rates"]
    assert rate["target_bpp"] == 0.25 and rate["status"] == "ok"
    # Quality 2: N = 128, the parameters worked out in test_adapters_compressai.py.
    assert rate["params"]["decoder"] == 9_237_565
    assert rep["submission"]["rates"][0]["options"] == {"arch": "cheng2020-anchor-checkerboard", "quality": 2,
                                                        "metric": "mse"}
    # The manifest it stood for stays beside the report and is a submission of its own.
    assert load_submission(tmp_path / "submission").rates[0].options["quality"] == 2


# Whole profiles of the bundled submissions in quick mode (one rate, chelsea 451×300, one repeat).
# Measured on the 2-core machine: bmshj2018-hyperprior 9 s, cheng2020-checkerboard 9 s, mbt2018 22 s.
@pytest.mark.slow
@pytest.mark.parametrize("directory, params, conv_calls", [
    # mbt2018 quality 1 (N = M = 192), weights + biases:
    #   g_s = 3 deconv(192,192,k5) 3·921,792 + deconv(192,3,k5) 14,403 + 3 IGDN(192) 3·37,056 = 2,890,947
    #   h_s = deconv(192,192,k5) 921,792 + deconv(192,288,k5) 1,382,688 + conv(288,384,k3) 995,712 = 3,300,192
    #   entropy parameters 1×1: 492,160 + 328,192 + 196,992 = 1,017,344; context 5×5 192→384: 1,843,584
    #   entropy bottleneck(192): 61 per channel = 11,712                         decoder = 9,063,779
    #   encoder = decoder − g_s + g_a (2,891,136) + h_a (331,968 + 2·921,792 = 2,175,552) = 11,239,520
    # Decode: chelsea padded to 320×512, latent 20×32 = 640 positions, 4 convolutions each + 10.
    ("mbt2018", (11_239_520, 9_063_779), 10 + 4 * 640),
    # cheng2020 anchor checkerboard quality 1 (N = 128): decoder = total − g_a − h_a (see
    # test_adapters_compressai.py); encoder = total − g_s, g_s = 4·295,168 + 3·1,344,768 + 13,836.
    # Decode: 34 convolutions whatever the size (two passes).
    ("cheng2020-checkerboard", (11_833_149 - 5_228_812, 9_237_565), 34),
])
def test_bundled_submission_quick(tmp_path, directory, params, conv_calls):
    proc = run_cli(str(SUBMISSIONS / directory), "--quick", "--device", "cpu", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (rate,) = _report(tmp_path)["rates"]
    assert rate["target_bpp"] == 0.03 and rate["status"] == "ok"
    assert (rate["params"]["encoder"], rate["params"]["decoder"]) == params
    (image,) = rate["images"]
    assert image["name"] == "chelsea"
    assert image["counts"]["decoder"]["complete"] is True
    assert image["counts"]["decoder"]["ops"]["aten::convolution"]["calls"] == conv_calls
    assert rate["weights"]["source"].startswith("random initialisation")
