"""The JPEG AI metric set (profiler/metrics.py): PSNR-Y/U/V by hand, the others against a second
implementation where one exists (within the stated tolerance), else against what the metric must give."""

import math

import numpy as np
import pytest
import torch

from profiler import metrics
from profiler.metrics import compute, ycbcr_bt709


def _flat(r, g, b, h=16, w=16):
    x = torch.empty(1, 3, h, w, dtype=torch.uint8)
    for c, v in enumerate((r, g, b)):
        x[:, c] = v
    return x


def _psnr(mse):
    return 10 * math.log10(255 ** 2 / mse)


def test_bt709_conversion_by_hand():
    ycc = ycbcr_bt709(_flat(255, 255, 255))[0, :, 0, 0].tolist()
    assert ycc == pytest.approx([255.0, 128.0, 128.0], abs=1e-9)
    # Pure red: Y = 0.2126·255 = 54.213; Cb = (0 − 54.213)/1.8556 + 128; Cr = (255 − 54.213)/1.5748 + 128.
    ycc = ycbcr_bt709(_flat(255, 0, 0))[0, :, 0, 0].tolist()
    assert ycc == pytest.approx([54.213, 128 - 54.213 / 1.8556, 128 + 200.787 / 1.5748], abs=1e-9)


def test_psnr_y_u_v_by_hand():
    # R off by 10 code values: ΔY = 2.126, ΔCb = −2.126/1.8556, ΔCr = (10 − 2.126)/1.5748 = 5.0.
    q = compute(_flat(100, 100, 100), _flat(110, 100, 100), keys=("psnr_y", "psnr_u", "psnr_v"))
    assert q["psnr_y"] == pytest.approx(_psnr(2.126 ** 2), abs=1e-9)
    assert q["psnr_u"] == pytest.approx(_psnr((2.126 / 1.8556) ** 2), abs=1e-9)
    assert q["psnr_v"] == pytest.approx(_psnr(5.0 ** 2), abs=1e-9)
    same = compute(_flat(1, 2, 3), _flat(1, 2, 3), keys=("psnr_y", "psnr_u", "psnr_v"))
    assert same == {"psnr_y": math.inf, "psnr_u": math.inf, "psnr_v": math.inf}


@pytest.fixture(scope="module")
def pair():
    """A natural picture (scikit-image's astronaut, 256×256 crop) and a blurred, noisy copy, 8-bit."""
    from skimage import data

    x = torch.from_numpy(data.astronaut()[100:356, 150:406].copy()).permute(2, 0, 1)[None]
    g = torch.Generator().manual_seed(1)
    blur = torch.nn.functional.avg_pool2d(x.double(), 3, 1, 1, count_include_pad=False)
    y = (blur + 4 * torch.randn(blur.shape, generator=g, dtype=torch.float64)).round().clamp(0, 255).to(torch.uint8)
    return x, y


def _y01(x8):
    return (ycbcr_bt709(x8)[:, :1] / 255).float()


def test_ms_ssim_y_agrees_with_pytorch_msssim_and_torchmetrics(pair):
    from pytorch_msssim import ms_ssim
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as tm_ms_ssim

    x, y = pair
    ours = compute(x, y, keys=("ms_ssim_y",))["ms_ssim_y"]
    a, b = _y01(x), _y01(y)
    assert 0.8 < ours < 0.999
    assert ours == pytest.approx(ms_ssim(a, b, data_range=1.0).item(), abs=1e-3)
    assert ours == pytest.approx(tm_ms_ssim(a, b, data_range=1.0).item(), abs=1e-3)


def test_vifp_agrees_with_torchmetrics(pair):
    from torchmetrics.functional.image import visual_information_fidelity

    x, y = pair
    ours = compute(x, y, keys=("vifp",))["vifp"]
    assert 0.1 < ours < 0.99
    # torchmetrics takes 0..255 values (σ²_n = 2 is on that scale); piq scales its [0, 1] input to it.
    assert ours == pytest.approx(visual_information_fidelity(_y01(x) * 255, _y01(y) * 255).item(), abs=1e-3)


def test_fsim_agrees_with_pyiqa(pair):
    x, y = pair
    ours = compute(x, y, keys=("fsim",))["fsim"]
    other = metrics.pyiqa_arch("fsim_arch").FSIM(chromatic=False)
    theirs = other(_y01(x).repeat(1, 3, 1, 1), _y01(y).repeat(1, 3, 1, 1)).item()
    assert 0.5 < ours < 0.999
    assert ours == pytest.approx(theirs, abs=1e-3)


def test_psnr_hvs_m_agrees_between_the_packages_numpy_and_cpp_code(pair):
    psnr_hvsm = metrics._import_quiet("psnr_hvsm")
    x, y = pair
    ours = compute(x, y, keys=("psnr_hvs_m",))["psnr_hvs_m"]
    a, b = (ycbcr_bt709(p)[0, 0].numpy() / 255 for p in (x, y))
    _, cpp = psnr_hvsm.psnr_hvs_hvsm_cpp(a, b)
    assert ours == pytest.approx(float(cpp), abs=1e-6)
    assert 20 < ours < 60
    assert compute(x, x, keys=("psnr_hvs_m",))["psnr_hvs_m"] == 100.0     # the package caps identical pictures


@pytest.mark.parametrize("key,identical", [("iw_ssim", 1.0), ("nlpd", 0.0), ("vmaf", 100.0)])
def test_single_implementation_metrics_are_ideal_on_identical_pictures_and_worsen_with_noise(pair, key, identical):
    """IW-SSIM (piq), NLPD (pyiqa) and VMAF (vmaf-torch) have no second implementation here: the identical
    pair gives the metric's ideal value and more noise gives a worse one."""
    x, y = pair
    g = torch.Generator().manual_seed(2)
    worse = (y.double() + 10 * torch.randn(y.shape, generator=g, dtype=torch.float64)).round().clamp(0, 255).to(torch.uint8)
    same, v1, v2 = (compute(x, p, keys=(key,))[key] for p in (x, y, worse))
    if key == "vmaf":
        # VMAF is a regression on features: a still picture against itself (motion 0) scores 97.43 with the
        # vmaf_v0.6.1 model, not 100.
        assert same == pytest.approx(97.43, abs=0.01)
        identical = same
    else:
        assert same == pytest.approx(identical, abs=1e-3)
    if key == "nlpd":
        assert 0 < v1 < v2
    else:
        assert v2 < v1 < identical


def test_too_small_pictures_give_none_not_a_number():
    q = compute(_flat(10, 20, 30, 32, 32), _flat(11, 20, 30, 32, 32))
    assert q["ms_ssim_y"] is None and q["iw_ssim"] is None and q["nlpd"] is None
    assert q["psnr_y"] is not None and q["fsim"] is not None


def test_metric_info_names_package_version_plane_and_range():
    info = metrics.info()
    assert set(info) >= {"psnr_y", "psnr_u", "psnr_v", "ms_ssim_y", "iw_ssim", "vifp", "fsim", "nlpd",
                         "psnr_hvs_m", "vmaf", "psnr_rgb", "ms_ssim"}
    for key in ("ms_ssim_y", "iw_ssim", "vifp", "fsim", "nlpd", "psnr_hvs_m", "vmaf"):
        assert info[key]["measured"], info[key]["reason"]
        assert info[key]["version"] and info[key]["plane"] and info[key]["range"] and info[key]["conventions"]
    assert info["ms_ssim_y"]["package"] == "piq" and info["ms_ssim_y"]["version"] == "0.8.0"
    assert info["psnr_y"]["package"] == "by hand"


def test_a_metric_not_defined_for_a_flat_picture_has_no_value_and_the_others_do():
    # IW-SSIM's Gaussian scale mixture needs the covariance of the picture's neighbourhoods: singular for
    # a flat grey original, so no value; PSNR-Y of a flat 128 against flat 130 is 20·log10(255/2) by hand.
    flat = torch.full((1, 3, 192, 192), 128, dtype=torch.uint8)
    out = metrics.compute(flat, flat + 2)
    assert out["iw_ssim"] is None
    assert out["psnr_y"] == pytest.approx(20 * math.log10(255 / 2))
