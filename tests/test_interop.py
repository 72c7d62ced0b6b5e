"""Device interoperability measured in-process on the rate-controlled fixture codec (CPU proxy pair)."""

import sys

import numpy as np
import pytest
import torch

from profiler.images import TestImage
from profiler.interop import PROXY_PAIR, measure_interop
from profiler.report import RateResult

from conftest import CODECS


@pytest.fixture
def ratectl():
    sys.path.insert(0, str(CODECS / "ratectl"))
    try:
        import ratectl
        yield ratectl
    finally:
        sys.path.remove(str(CODECS / "ratectl"))


class _Rate:
    target_bpp, options = 1.0, {}


def _image():
    import skimage.data

    return TestImage("astro", np.ascontiguousarray(skimage.data.astronaut()[100:276, 150:342]))


def test_deterministic_codec_decodes_identically_on_the_proxy(ratectl):
    codec = ratectl.RateControlledCodec(1.0, torch.device("cpu"))
    result = RateResult(index=0, target_bpp=1.0)
    measure_interop(codec, None, _Rate(), [_image()], None, ["cpu"], result)
    assert result.interop["pair"] == PROXY_PAIR and result.interop["proxy"] is True
    e = result.interop["images"][0]
    assert e["max_abs_diff"] == 0.0 and e["max_abs_diff_8bit"] == 0 and e["psnr_drop_db"] == 0.0
    assert e["a"] == e["b"] and e["a"]["ms_ssim"] is not None      # 176 px ≥ 161: MS-SSIM defined
    assert e["bpp"] == 8 * e["bytes"] / (192 * 176)


def test_float_rounding_entropy_decoding_is_caught(ratectl):
    # Turning oneDNN off changes the transposed convolution's float rounding (≈1e-7); amplified by 2^24 the
    # symbol offsets differ and the decoded symbols are wrong: a real desynchronisation.
    codec = ratectl.RateControlledCodec(1.0, torch.device("cpu"), float_entropy=True)
    result = RateResult(index=0, target_bpp=1.0)
    measure_interop(codec, None, _Rate(), [_image()], None, ["cpu"], result)
    e = result.interop["images"][0]
    assert "decode_error_b" not in e
    assert e["max_abs_diff_8bit"] > 1 and e["psnr_drop_db"] > 0.1
    assert e["b"]["psnr_rgb"] < e["a"]["psnr_rgb"]


def test_decode_failure_on_b_is_recorded():
    class Fragile:
        encoder = decoder = torch.nn.Identity()

        def encode(self, x):
            return b"\x01"

        def decode(self, bits):
            if not torch.backends.mkldnn.enabled:
                raise ValueError("cannot decode here")
            return torch.zeros(1, 3, 4, 4)

    img = TestImage("grey", np.full((4, 4, 3), 128, np.uint8))
    result = RateResult(index=0, target_bpp=1.0)
    measure_interop(Fragile(), None, _Rate(), [img], None, ["cpu"], result)
    e = result.interop["images"][0]
    assert e["decode_error_b"] == "ValueError: cannot decode here" and "b" not in e


def test_worker_uses_the_counted_run_as_device_a(ratectl):
    """On the proxy pair the worker compares the counted run's bitstream and picture with the B decode,
    instead of encoding and decoding on A again: the same entry as the standalone measurement, and the
    codec's encode() runs once per image fewer."""
    from profiler.conditions import load_conditions
    from profiler.worker import _measure_image

    class Counting(ratectl.RateControlledCodec):
        encodes = 0

        def encode(self, x):
            Counting.encodes += 1
            return super().encode(x)

    cond = load_conditions(None)          # warm-up 1 (= the counted run) + 3 repeats
    codec = Counting(1.0, torch.device("cpu"), float_entropy=True)
    entries: list = []
    _measure_image(codec, _image(), cond, ["cpu"], None, entries)
    assert Counting.encodes == 1 + 3
    result = RateResult(index=0, target_bpp=1.0)
    measure_interop(codec, None, _Rate(), [_image()], None, ["cpu"], result, entries)
    assert Counting.encodes == 4 and result.interop["images"] == entries
    alone = RateResult(index=0, target_bpp=1.0)
    measure_interop(codec, None, _Rate(), [_image()], None, ["cpu"], alone)
    assert Counting.encodes == 5
    (e,), (f,) = entries, alone.interop["images"]
    assert e["bytes"] == f["bytes"] and e["max_abs_diff_8bit"] == f["max_abs_diff_8bit"] > 1
    assert e["a"] == f["a"] and e["b"] == f["b"]
