"""PSNR-RGB, PSNR-Y (BT.709), MS-SSIM and BD-rate against hand-computed values."""

import math

import numpy as np
import pytest
import scipy.interpolate
import torch

from profiler.quality import BD_MIN_POINTS, MS_SSIM_MIN_SIDE, bd_rate, ms_ssim, psnr_rgb, psnr_y


def _flat(r, g, b, h=8, w=8):
    x = torch.empty(1, 3, h, w)
    for c, v in enumerate((r, g, b)):
        x[:, c] = v / 255.0
    return x


def test_psnr_rgb_and_y_by_hand():
    a, b = _flat(100, 100, 100), _flat(110, 100, 100)      # R off by 10 code values everywhere
    # RGB: MSE = 10² / 3.  Y (BT.709): ΔY = 0.2126 × 10 = 2.126, MSE = 4.519876.
    assert psnr_rgb(a, b) == pytest.approx(10 * math.log10(255 ** 2 / (100 / 3)), abs=1e-9)
    assert psnr_y(a, b) == pytest.approx(10 * math.log10(255 ** 2 / 2.126 ** 2), abs=1e-9)
    # A green error weighs 0.7152 in Y: ΔY = 7.152.
    assert psnr_y(a, _flat(100, 110, 100)) == pytest.approx(10 * math.log10(255 ** 2 / 7.152 ** 2), abs=1e-9)
    assert psnr_rgb(a, a) == float("inf") and psnr_y(a, a) == float("inf")


def test_psnr_is_on_8bit_pictures():
    a = _flat(100, 100, 100)
    # 0.3 of a code value rounds away in the 8-bit picture.
    assert psnr_rgb(a, a + 0.3 / 255) == float("inf")


def test_ms_ssim_identical_is_one_and_small_pictures_are_not_measured():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, MS_SSIM_MIN_SIDE, MS_SSIM_MIN_SIDE, generator=g)
    assert ms_ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    noisy = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert 0.0 < ms_ssim(x, noisy) < 0.99
    assert MS_SSIM_MIN_SIDE == 161
    assert ms_ssim(x[..., :160, :], x[..., :160, :]) is None


RATES = [0.1, 0.25, 0.5, 1.0]
PSNR = [28.0, 31.0, 34.5, 37.0]


def test_bd_rate_of_a_rate_scaled_curve_is_exact():
    # The test curve needs 10 % fewer bits at every quality: log-rate shifts by log10(0.9) everywhere,
    # so BD-rate = (10^log10(0.9) − 1) × 100 = −10 % whatever the interpolation.
    bd = bd_rate(RATES, PSNR, [r * 0.9 for r in RATES], PSNR)
    assert bd.percent == pytest.approx(-10.0, abs=1e-9)
    bd = bd_rate(RATES, PSNR, [r * 1.05 for r in RATES], PSNR)
    assert bd.percent == pytest.approx(5.0, abs=1e-9)


def test_bd_rate_against_the_reference_formula():
    # Reference: pchip of log10(rate) over PSNR, both integrated over the overlapping PSNR interval.
    test_psnr = [28.3, 31.2, 34.6, 37.4]
    fa = scipy.interpolate.PchipInterpolator(PSNR, np.log10(RATES))
    ft = scipy.interpolate.PchipInterpolator(test_psnr, np.log10(RATES))
    lo, hi = max(PSNR[0], test_psnr[0]), min(PSNR[-1], test_psnr[-1])
    avg = (ft.integrate(lo, hi) - fa.integrate(lo, hi)) / (hi - lo)
    expected = (10 ** avg - 1) * 100
    bd = bd_rate(RATES, PSNR, RATES, test_psnr)
    assert bd.percent == pytest.approx(expected, abs=1e-9)
    assert bd.percent < 0          # higher quality at the same rates: fewer bits


def test_bd_rate_identical_curves_is_zero_even_when_not_monotonic():
    bd = bd_rate(RATES, [30, 29, 33, 35], RATES, [30, 29, 33, 35])
    assert bd.percent == 0.0


def test_bd_rate_not_defined_cases_say_why():
    assert BD_MIN_POINTS == 4
    three = bd_rate(RATES[:3], PSNR[:3], RATES[:3], [p + 0.1 for p in PSNR[:3]])
    assert three.percent is None and "at least 4 rate points" in three.reason
    flat = bd_rate(RATES, [30, 29, 33, 35], RATES, [30, 29.5, 33, 35])
    assert flat.percent is None and "strictly increase" in flat.reason
    lossless = bd_rate(RATES, PSNR[:3] + [float("inf")], RATES, PSNR)
    assert lossless.percent is None and "not finite" in lossless.reason


def test_bd_rate_sorts_points_by_rate():
    order = [2, 0, 3, 1]
    bd = bd_rate([RATES[i] for i in order], [PSNR[i] for i in order], [r * 0.9 for r in RATES], PSNR)
    assert bd.percent == pytest.approx(-10.0, abs=1e-9)
