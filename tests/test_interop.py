"""Device interoperability measured in-process on the rate-controlled fixture codec (CPU proxy pair)."""

import sys

import numpy as np
import pytest
import torch

from profiler.images import TestImage
from profiler.interop import PROXY_PAIR, measure_interop

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
    interop = measure_interop(codec, None, _Rate(), [_image()], ["cpu"])
    assert interop["pair"] == PROXY_PAIR and interop["proxy"] is True
    e = interop["images"][0]
    # The entropy decoding is integer, so the symbols are the same; the float synthesis may still round
    # differently with oneDNN off (seen: 6e-8 on the [0, 1] scale), far below one 8-bit code value.
    assert e["max_abs_diff"] < 1e-6 and e["max_abs_diff_8bit"] == 0
    assert abs(e["psnr_drop_db"]) < 1e-4 and e["a"]["ms_ssim"] is not None      # 176 px ≥ 161: MS-SSIM defined
    assert e["bpp"] == 8 * e["bytes"] / (192 * 176)


def test_b_rounding_to_the_same_8bit_picture_takes_as_quality_and_a_differing_one_is_measured(monkeypatch):
    """The metrics are of 8-bit pictures: a B picture 1e-7 away from A's (oneDNN off) has A's metrics,
    not computed again; one code value away, B's are computed."""
    import profiler.interop as interop
    from profiler.images import TestImage as Img

    x = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(1))
    x_a = (x * 255).round().div(255)
    calls = []
    real = interop._quality
    monkeypatch.setattr(interop, "_quality", lambda a, b: calls.append(1) or real(a, b))
    img = Img("n", np.zeros((40, 48, 3), np.uint8))
    qa = {"psnr_rgb": 30.0, "ms_ssim": None}
    same = interop.compare_image(img, x, b"b", x_a, lambda b: x_a + 1e-7, "cpu", quality_a=qa)
    assert calls == [] and same["b"] == qa and same["max_abs_diff_8bit"] == 0 and 0 < same["max_abs_diff"] < 1e-6
    moved = x_a.clone()
    moved[0, 0, 0, 0] += 1 / 255 if moved[0, 0, 0, 0] < 0.5 else -1 / 255
    other = interop.compare_image(img, x, b"b", x_a, lambda b: moved, "cpu", quality_a=qa)
    assert calls == [1] and other["max_abs_diff_8bit"] == 1 and other["b"]["psnr_rgb"] != qa["psnr_rgb"]


def test_float_rounding_entropy_decoding_is_caught(ratectl):
    # Turning oneDNN off changes the transposed convolution's float rounding (≈1e-7); amplified by 2^24 the
    # symbol offsets differ and the decoded symbols are wrong: a real desynchronisation.
    codec = ratectl.RateControlledCodec(1.0, torch.device("cpu"), float_entropy=True)
    e = measure_interop(codec, None, _Rate(), [_image()], ["cpu"])["images"][0]
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
    e = measure_interop(Fragile(), None, _Rate(), [img], ["cpu"])["images"][0]
    assert e["decode_error_b"] == "ValueError: cannot decode here" and "b" not in e


def test_worker_uses_the_counted_run_as_device_a(ratectl, monkeypatch):
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

    from profiler.untimed import UNTIMED_THREADS_ENV

    # The proxy decode inside _measure_image is an untimed step (on the idle cores, a number that depends
    # on the machine's load); the standalone measurement below runs at this thread: both at one thread,
    # since this codec's float entropy coding depends on the thread count.
    monkeypatch.setenv(UNTIMED_THREADS_ENV, "1")
    cond = load_conditions(None)          # warm-up 1 (= the counted run) + 3 repeats
    codec = Counting(1.0, torch.device("cpu"), float_entropy=True)
    # As the worker does: timed (and counted) calls at timing.threads; _measure_image leaves them so after
    # its untimed steps. This codec's float entropy coding depends on the thread count.
    torch.set_num_threads(cond.timing.threads)
    _, entry, _ = _measure_image(codec, _image(), cond, None, interop_proxy=True)
    entries = [entry]
    assert Counting.encodes == 1 + 3
    interop = measure_interop(codec, None, _Rate(), [_image()], ["cpu"], entries)
    assert Counting.encodes == 4 and interop["images"] == entries
    alone = measure_interop(codec, None, _Rate(), [_image()], ["cpu"])
    assert Counting.encodes == 5
    (e,), (f,) = entries, alone["images"]
    assert e["bytes"] == f["bytes"] and e["max_abs_diff_8bit"] == f["max_abs_diff_8bit"] > 1
    assert e["a"] == f["a"] and e["b"] == f["b"]
