"""The GPU code paths on a real CUDA device: event timing, allocator peaks, NVML, the minimum-memory
bisection, and a whole worker run on the GPU. Skipped, with that reason, where no CUDA device exists;
the device-free logic (statistics, bisection, NVML parsing) is tested in test_timing.py/test_memory.py."""

import time

import pytest
import torch

from profiler import memory, runner, timing
from profiler.conditions import CountingSpec, ImageSpec, TestConditions, TimingSpec
from profiler.submission import load_submission

from conftest import CODECS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

MIB = 1024 * 1024


def test_cuda_events_include_queued_work():
    """A launch returns before the GPU finishes; the events, with synchronisation, must see the work."""
    dev = torch.device("cuda")
    a = torch.randn(4096, 4096, device=dev)

    def work():
        for _ in range(20):
            a @ a
    work()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    work()
    launch_s = time.perf_counter() - t0          # asynchronous: launches only
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    work()
    torch.cuda.synchronize()
    wall_s = time.perf_counter() - t0            # launches + the kernels
    times, _ = timing.time_cuda(work, 3)
    med = timing.summarize(times).median_s
    assert med > launch_s
    assert 0.7 * wall_s < med < 1.3 * wall_s


def test_allocator_peak_sees_a_known_tensor():
    dev = torch.device("cuda")
    memory.cuda_peak_begin(dev)
    x = torch.ones(256 * MIB // 4, device=dev)
    del x
    peak = memory.cuda_peak_end(dev)
    assert 256 <= peak["max_allocated_mib"] < 256 + 4
    assert peak["max_reserved_mib"] >= peak["max_allocated_mib"]


def test_nvml_sees_the_device():
    nvml = memory.nvml_for_torch_device(torch.cuda.current_device())
    if nvml is None:
        pytest.skip("NVML not available (nvidia-ml-py missing or no driver library)")
    torch.zeros(1, device="cuda")   # a CUDA context exists
    assert nvml["total_mib"] > 1000 and 0 < nvml["used_mib"] <= nvml["total_mib"]
    assert nvml["driver"]


def test_min_cuda_memory_of_a_known_allocation():
    dev = torch.device("cuda")
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(dev)

    def call():
        y = torch.ones(512 * MIB // 4, device=dev)
        return float(y[-1])

    found = memory.min_cuda_memory(call, dev, base + 512 * MIB)
    need = (base + 512 * MIB) / MIB
    assert need <= found["min_mib"] <= need + 4
    assert found["largest_failing_mib"] is None or found["largest_failing_mib"] < need
    # The limit is lifted afterwards: a large allocation works again.
    z = torch.ones(1024 * MIB // 4, device=dev)
    del z


@pytest.mark.slow
def test_worker_measures_on_the_gpu():
    sub = load_submission(CODECS / "hungry")
    cond = TestConditions(images=ImageSpec(builtin=("chelsea",)), counting=CountingSpec(resolutions=()),
                          timing=TimingSpec(repeats=2, warmup=1, devices=("cpu", "cuda"), min_gpu_memory=True))
    result = runner.run_rate(sub, 0, cond, ["cpu", "cuda"])
    assert result.ok, result.error
    cuda = result.images[0].memory["cuda"]
    # hungry: encode holds 128 MiB, decode 384 MiB, here on the GPU.
    assert 128 <= cuda["encode"]["max_allocated_mib"] < 128 + 8
    assert 384 <= cuda["decode"]["max_allocated_mib"] < 384 + 8
    assert result.images[0].timing["cuda"]["decode"]["n"] == 2
    assert result.timing["cuda"]["decode"]["images"] == 1
    mins = result.memory["cuda"]["min"]
    assert 384 <= mins["decode"]["min_mib"] <= 384 + 8 and 128 <= mins["encode"]["min_mib"] <= 128 + 8
    assert result.environment["gpu_settings"]["cudnn_benchmark"] is False
    assert result.environment["gpu_settings"]["matmul_allow_tf32"] is False
    assert "gpu" not in result.not_measured
