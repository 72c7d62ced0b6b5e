"""Memory: per-call peak RSS of a codec with known allocations, worker isolation, the minimum-memory
bisection and NVML handling without a device."""

import sys
from types import SimpleNamespace

import pytest

from profiler import runner
from profiler.conditions import CountingSpec, ImageSpec, TestConditions, TimingSpec
from profiler.memory import MIB, bisect_minimum, bisection_trials, nvml_device_used_mib, nvml_index, parse_nvml_memory
from profiler.submission import load_submission

from conftest import CODECS


def conditions(repeats: int = 2, warmup: int = 1) -> TestConditions:
    return TestConditions(images=ImageSpec(builtin=("chelsea",)), counting=CountingSpec(resolutions=()),
                          timing=TimingSpec(repeats=repeats, warmup=warmup, devices=("cpu",)))


# -- bisection (pure) ---------------------------------------------------------------------------------

def test_bisection_exact_threshold():
    tried = []
    b = bisect_minimum(lambda x: tried.append(x) or x >= 1000, 0, 4096, 1)
    assert (b.minimum, b.largest_failing) == (1000, 999)
    # high, low, then ⌈log2(4096 / 1)⌉ = 12 halvings.
    assert len(b.trials) == len(tried) == 14 == bisection_trials(0, 4096, 1)
    assert tried[:2] == [4096, 0]


def test_bisection_stops_at_resolution():
    b = bisect_minimum(lambda x: x >= 1000, 0, 4096, 64)
    # (0,4096] → 2048 ok → 1024 ok → 512 no → 768 no → 896 no → 960 no: (960, 1024] is 64 wide.
    assert [t for t, _ in b.trials] == [4096, 0, 2048, 1024, 512, 768, 896, 960]
    assert (b.minimum, b.largest_failing) == (1024, 960)
    assert bisection_trials(0, 4096, 64) == 8


def test_bisection_low_passes_and_high_fails():
    b = bisect_minimum(lambda x: True, 300, 900, 2)
    assert (b.minimum, b.largest_failing, len(b.trials)) == (300, None, 2)
    with pytest.raises(ValueError):
        bisect_minimum(lambda x: x >= 10_000, 0, 4096, 1)
    with pytest.raises(ValueError):
        bisect_minimum(lambda x: True, 10, 5, 1)


# -- NVML (no device needed) --------------------------------------------------------------------------

def test_nvml_index_follows_cuda_visible_devices():
    assert nvml_index(0, None) == 0 and nvml_index(1, "") == 1
    assert nvml_index(0, "2,3") == 2 and nvml_index(1, "2, 3") == 3
    assert nvml_index(2, "2,3") is None
    assert nvml_index(1, "1,-1,2") is None          # CUDA stops at the first invalid id
    assert nvml_index(0, "GPU-8f1c2e4a-0000") is None  # UUIDs: the core NVML calls cannot map them


def test_parse_nvml_memory_bytes_and_str_names():
    info = SimpleNamespace(used=3 * MIB, total=80 * MIB, free=77 * MIB)
    assert parse_nvml_memory(b"NVIDIA H100", info) == {"name": "NVIDIA H100", "used_mib": 3.0, "total_mib": 80.0}
    assert parse_nvml_memory("NVIDIA H100", info)["name"] == "NVIDIA H100"


class FakeNvml:
    """The core NVML calls, as nvidia-ml-py (str) or pynvml 8 (bytes) return them."""

    def __init__(self, count=1, fail_init=False):
        self.count, self.fail_init, self.shutdowns = count, fail_init, 0

    def nvmlInit(self):
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self):
        return self.count

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("handle", i)

    def nvmlDeviceGetName(self, h):
        return b"Fake GPU"

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(used=1536 * MIB, total=81559 * MIB)

    def nvmlSystemGetDriverVersion(self):
        return "580.65.06"

    def nvmlShutdown(self):
        self.shutdowns += 1


def test_nvml_reading_with_a_fake_library(monkeypatch):
    fake = FakeNvml(count=1)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert nvml_device_used_mib(0) == {"name": "Fake GPU", "used_mib": 1536.0, "total_mib": 81559.0,
                                       "driver": "580.65.06"}
    assert nvml_device_used_mib(1) is None          # no such device
    assert nvml_device_used_mib(None) is None       # unmappable CUDA_VISIBLE_DEVICES
    assert fake.shutdowns == 2


def test_nvml_absent_or_failing_is_none(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(fail_init=True))
    assert nvml_device_used_mib(0) is None
    monkeypatch.setitem(sys.modules, "pynvml", None)   # import pynvml raises ImportError
    assert nvml_device_used_mib(0) is None


# -- CPU peaks in a worker ----------------------------------------------------------------------------

@pytest.mark.slow
def test_peak_rss_per_call_shows_known_allocations():
    """tests/codecs/hungry: encode writes a 128 MiB tensor, decode a 384 MiB one."""
    sub = load_submission(CODECS / "hungry")
    result = runner.run_rate(sub, 0, conditions(), ["cpu"])
    assert result.ok, result.error
    enc = result.images[0].memory["cpu"]["encode"]
    dec = result.images[0].memory["cpu"]["decode"]
    assert enc.per_call and dec.per_call
    # Within 1 MiB below: pages already resident before the call (freed, not returned) can be reused.
    assert 128 - 1 <= enc.above_call_start_mib < 128 + 64
    assert 384 - 1 <= dec.above_call_start_mib < 384 + 64
    assert dec.above_baseline_mib >= 384 and dec.peak_mib >= dec.baseline_mib + 384
    # The decode peak is its own: had the high-water mark not been reset, encode's would equal it.
    assert enc.peak_mib < dec.peak_mib - 200
    assert result.memory["cpu"].decode.above_baseline_mib == dec.above_baseline_mib
    assert result.worker.model_loaded_rss_mib == dec.baseline_mib


@pytest.mark.slow
def test_worker_isolation_between_rate_points(tmp_path):
    """tests/codecs/leaky keeps a global encode count and leaks 256 MiB per encode."""
    sub = load_submission(CODECS / "leaky")
    report = runner.profile(sub, conditions(repeats=2, warmup=1), tmp_path, [0, 1], ["cpu"])
    a, b = report.rates
    assert a.ok and b.ok, (a.error, b.error)
    # The counted encode is the first of its process in both: 4 header bytes + 0 leaked-count bytes.
    # In a shared process the second rate point's would be 4 + 3 (1 counted + 0 warm-up + 2 timed).
    assert a.images[0].bytes == b.images[0].bytes == 4
    assert a.worker.pid != b.worker.pid
    # Each worker leaks 3 × 256 MiB, and its peak shows it; a shared process would start the second
    # rate point 768 MiB higher. The bound is half of that: two fresh workers' RSS differ by up to
    # ~50 MiB on their own (allocator, import order), which a 32 MiB leak could not be told from.
    leaked = 3 * 256
    for r in (a, b):
        assert r.worker.peak_rss_mib - r.worker.model_loaded_rss_mib >= leaked - 1
    assert abs(a.worker.peak_rss_mib - b.worker.peak_rss_mib) < leaked / 2
    assert abs(a.worker.model_loaded_rss_mib - b.worker.model_loaded_rss_mib) < leaked / 2
