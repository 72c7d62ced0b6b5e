"""verify on a CUDA machine (issue 13): the submitted bitstreams decoded on the GPU, each GPU picture
against the CPU one, timed, its peaks; without CUDA every item says "not measured: no CUDA device".
Tested on the CPU with a pretended device (test_gpu_logic.py's fakes): the "CUDA" instance is a CPU
codec, so the logic is what is tested here; the real device runs it in tests/test_gpu.py style."""

from __future__ import annotations

import math
import textwrap
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from profiler import interop, memory, worker
from profiler.conditions import CountingSpec, ImageSpec, TestConditions, TimingSpec
from profiler.quality import to_uint8

from conftest import CODECS
from test_gpu_logic import FakeEvent, gpu_flags, pretend_gpu  # noqa: F401  (fixtures)

MIB = 1024 * 1024


def _tiny(rate_gain=4.0):
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_for_verify_gpu", CODECS / "tiny" / "codec.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.TinyCodec(rate_gain, torch.device("cpu"))


@pytest.fixture
def delivery(tmp_path):
    """Two 48×32 originals and tiny's bitstreams and decoded pictures of them at 0.5 bpp (gain 4)."""
    from profiler.images import builtin_image

    orig, bits = tmp_path / "originals", tmp_path / "bits" / "0.5"
    orig.mkdir()
    bits.mkdir(parents=True)
    px = builtin_image("chelsea").pixels
    codec = _tiny()
    for k, name in enumerate(("a", "b")):
        Image.fromarray(px[40 * k:40 * k + 32, 60:108].copy()).save(orig / f"{name}.png")
        x = torch.from_numpy(np.asarray(Image.open(orig / f"{name}.png")).copy()).permute(2, 0, 1)[None].float() / 255
        b = codec.encode(x)
        (bits / f"{name}.bin").write_bytes(b)
        arr = to_uint8(codec.decode(b))[0].permute(1, 2, 0).numpy()
        Image.fromarray(np.ascontiguousarray(arr), "RGB").save(bits / f"{name}.png")
    return {"originals": orig, "folder": bits}


@pytest.fixture
def gpu_differs(tmp_path):
    """tiny on the CPU whatever the device; the instance built for "cuda" decodes one sample 2 code values
    off (a known GPU-vs-CPU difference)."""
    d = tmp_path / "gpu_differs"
    shutil.copytree(CODECS / "tiny", d)
    code = (d / "codec.py").read_text() + textwrap.dedent("""

        import os


        def build(rate, device):
            codec = TinyCodec(rate.options.get("gain", 8.0), torch.device("cpu"))
            if torch.device(device).type == "cuda":
                good = codec.decode

                def decode(bits):
                    y = good(bits).clone()
                    v = y[0, 0, 0, 0]
                    y[0, 0, 0, 0] = v + 2 / 255 if v < 0.5 else v - 2 / 255
                    poison = os.environ.get("GPU_DIFFERS_NAN_ON")
                    if poison and bits == open(poison, "rb").read():
                        y[0, 0, 0, 1] = float("nan")
                    return y

                codec.decode = decode
            return codec
        """)
    (d / "codec.py").unlink()
    (d / "gpu_differs_codec.py").write_text(code)
    m = d / "submission.toml"
    m.write_text(m.read_text().replace('entry = "codec:build"', 'entry = "gpu_differs_codec:build"'))
    return d


def _job(directory, delivery, devices=("cpu", "cuda")) -> dict:
    cond = TestConditions(images=ImageSpec(source=str(delivery["originals"])), counting=CountingSpec(resolutions=()),
                          timing=TimingSpec(repeats=2, warmup=1, devices=tuple(devices)))
    return {"submission": str(directory), "rate_index": 0, "conditions": cond.to_dict(), "devices": list(devices),
            "seed": 0, "delivery": {"bitstreams": str(delivery["folder"]), "decoded": str(delivery["folder"])}}


@pytest.fixture
def fake_device(pretend_gpu, monkeypatch):
    """The CUDA calls of the GPU phase answered on the CPU: events, synchronisation, the allocator's peaks
    (300 MiB allocated at most, 320 reserved), NVML's view; a "CUDA" picture is accepted on the CPU."""
    monkeypatch.setattr(worker, "cuda_instance_problem", lambda a, b: None)
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a: 100 * MIB)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: 300 * MIB)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda *a: 320 * MIB)
    monkeypatch.setattr(memory, "nvml_snapshot", lambda uuid, index=None: {"used_mib": 1234.0, "sm_clock_mhz": 1980})
    real = interop.reconstruction_problem
    monkeypatch.setattr(interop, "reconstruction_problem", lambda x, shape, device=None: real(x, shape))


def test_verify_decodes_the_submitted_bitstreams_on_the_gpu(fake_device, delivery, gpu_differs):
    result = worker.run_job(_job(gpu_differs, delivery))
    assert result.ok, result.error
    items = {i.original: i for i in result.verification}
    assert set(items) == {"a", "b"}
    for name, it in items.items():
        assert it.decoded_bit_exact            # the CPU decode matches the submitted picture
        g = it.gpu
        assert g is not None and g.decoded_ok and not g.problem and it.gpu_not_measured is None
        # the known difference: one sample, 2 code values
        assert g.max_abs_diff_vs_cpu == 2 and g.bit_exact_vs_cpu is False
        assert g.max_abs_diff_float == pytest.approx(2 / 255, abs=1e-6)
        assert g.psnr_vs_cpu_db == pytest.approx(10 * math.log10(255 ** 2 / (4 / (48 * 32 * 3))))
        assert g.timing.n == 2 and len(g.timing.host_wall_values_s) == 2 and g.timing.sm_clock_mhz == 1980
        assert g.memory.max_allocated_mib == 300 and g.memory.above_start_mib == 200
        assert g.memory.nvml_used_mib == 1234.0
    # interoperability on the proponent's own bitstreams: the entries are the submitted ones
    assert result.interop.pair == "cpu→cuda" and not result.interop.proxy
    sizes = {p.stem: p.stat().st_size for p in delivery["folder"].glob("*.bin")}
    assert {e.name: e.bytes for e in result.interop.images} == sizes
    assert all(e.max_abs_diff_8bit == 2 for e in result.interop.images)
    assert "gpu" not in result.not_measured
    assert "cuda" not in result.timing           # the suite's own pictures were not timed on the GPU


def test_a_gpu_decode_that_fails_names_the_bitstream(fake_device, delivery, gpu_differs, monkeypatch):
    # the "GPU" picture of b holds a NaN: that item's GPU decode fails, a's does not
    monkeypatch.setenv("GPU_DIFFERS_NAN_ON", str(delivery["folder"] / "b.bin"))
    result = worker.run_job(_job(gpu_differs, delivery))
    assert result.ok, result.error
    items = {i.original: i for i in result.verification}
    assert items["a"].gpu.decoded_ok and items["a"].gpu.max_abs_diff_vs_cpu == 2
    b = items["b"].gpu
    assert not b.decoded_ok and b.problem.startswith(f"{delivery['folder'] / 'b.bin'}: the GPU decode failed")
    assert "non-finite" in b.problem
    assert items["b"].decoded_bit_exact                     # the CPU side of b is unaffected
    entry = next(e for e in result.interop.images if e.name == "b")
    assert "non-finite" in entry.decode_error_b             # and the interoperability rule sees it


def test_without_cuda_every_item_says_not_measured(delivery, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(worker, "crosscheck_codec", lambda codec: (None, {}))
    result = worker.run_job(_job(CODECS / "tiny", delivery))
    assert result.ok, result.error
    for it in result.verification:
        assert it.gpu is None
        assert it.gpu_not_measured.code == "no-device" and it.gpu_not_measured.reason == "no CUDA device"
    assert result.not_measured["gpu"].reason == "no CUDA device"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_verify_on_a_real_gpu(delivery):
    """The same path on a real device: tiny decodes its CPU bitstreams on the GPU within one code value
    of the CPU picture (float summation order differs), event-timed, with the allocator's peaks."""
    result = worker.run_job(_job(CODECS / "tiny", delivery))
    assert result.ok, result.error
    for it in result.verification:
        g = it.gpu
        assert g is not None and g.decoded_ok, (it.gpu, it.gpu_not_measured)
        assert g.device.startswith("cuda") and g.max_abs_diff_vs_cpu <= 1
        assert g.timing.n == 2 and g.timing.median_s > 0 and g.memory.max_allocated_mib > 0
    assert result.interop.pair == "cpu→cuda" and len(result.interop.images) == 2
