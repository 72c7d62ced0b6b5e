"""The GPU code paths on a real CUDA device: event timing beside host wall time, allocator peaks, NVML by
UUID, the minimum-memory bisection (raw and through worker._call), and a whole worker run on the GPU
with the cpu→cuda interoperability decode. Skipped, with that reason, where no CUDA device exists; the
device-free logic is tested in test_gpu_logic.py, test_timing.py and test_memory.py."""

import time

import pytest
import torch

from profiler import memory, runner, timing, worker
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


def test_side_stream_work_shows_as_a_gap():
    """Work queued on another stream, not joined: the events on the current stream miss it, the host
    wall time (after a device-wide synchronize) does not, and the gap is flagged."""
    dev = torch.device("cuda")
    a = torch.randn(4096, 4096, device=dev)
    side = torch.cuda.Stream()

    def work():
        with torch.cuda.stream(side):
            for _ in range(20):
                a @ a
    work()
    events, walls, _ = timing.time_cuda_both(work, 3)
    ev, wall = timing.summarize(events).median_s, timing.summarize(walls).median_s
    assert wall > 2 * ev
    assert timing.event_wall_gap(ev, wall) != ""


def test_allocator_peak_sees_a_known_tensor():
    dev = torch.device("cuda")
    memory.cuda_peak_begin(dev)
    start = torch.cuda.memory_allocated(dev)     # cuBLAS workspaces of earlier tests are in it
    x = torch.ones(256 * MIB // 4, device=dev)
    del x
    peak = memory.cuda_peak_end(dev, start)
    assert 256 <= peak["above_start_mib"] < 256 + 1
    assert peak["max_allocated_mib"] == pytest.approx(start / MIB + peak["above_start_mib"])
    assert peak["max_reserved_mib"] >= peak["max_allocated_mib"]


def test_nvml_finds_the_device_by_uuid():
    torch.zeros(1, device="cuda")   # a CUDA context exists
    uuid = str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
    snap = memory.nvml_snapshot(uuid)
    if "error" in snap and "not available" in snap["error"]:
        pytest.skip(snap["error"])
    assert snap.get("mapped_by") == "uuid", snap
    assert snap["total_mib"] > 1000 and 0 < snap["used_mib"] <= snap["total_mib"]
    assert snap["driver"] and (snap["sm_clock_mhz"] is None or snap["sm_clock_mhz"] > 0)


def _known_call(dev):
    def call():
        y = torch.ones(512 * MIB // 4, device=dev)
        return float(y[-1])
    return call


def test_min_cuda_memory_of_a_known_allocation():
    dev = torch.device("cuda")
    gc_base = memory.TorchCuda(dev)
    gc_base.settle()
    base = torch.cuda.memory_allocated(dev)
    found = memory.min_cuda_memory(_known_call(dev), dev)
    need = (base + 512 * MIB) / MIB
    # The cap counts reserved memory: the live blocks' segments, rounded; within 20 MiB of allocated.
    assert need <= found["min_mib"] <= need + 20, found
    assert found["largest_failing_mib"] is None or found["largest_failing_mib"] < found["min_mib"]
    assert found["unlimited_allocated_mib"] == pytest.approx(need, abs=1)
    assert found["trials"] <= 2 + 1 + 8          # bounded by the uncapped peak, not the whole device
    assert torch.cuda.memory_allocated(dev) == base
    # The limit is lifted afterwards: a large allocation works again.
    z = torch.ones(1024 * MIB // 4, device=dev)
    del z


def test_min_cuda_memory_through_the_workers_call():
    """Item 1 of issue 19: over-limit trials raised through worker._call are "does not fit"."""
    dev = torch.device("cuda")
    call = _known_call(dev)
    found = memory.min_cuda_memory(lambda: worker._call("decode", call), dev)
    assert found["largest_failing_mib"] is not None and found["min_mib"] >= 512


@pytest.mark.slow
def test_worker_measures_on_the_gpu():
    sub = load_submission(CODECS / "hungry")
    cond = TestConditions(images=ImageSpec(builtin=("chelsea",)), counting=CountingSpec(resolutions=()),
                          timing=TimingSpec(repeats=2, warmup=1, devices=("cpu", "cuda"), min_gpu_memory=True))
    result = runner.run_rate(sub, 0, cond, ["cpu", "cuda"])
    assert result.ok, result.error
    assert "gpu" not in result.not_measured and "min_gpu_memory" not in result.not_measured, result.not_measured
    cuda = result.images[0].memory["cuda"]
    # hungry: encode holds 128 MiB, decode 384 MiB (+ its 1.6 MiB picture), here on the GPU.
    assert 128 <= cuda["encode"].above_start_mib < 128 + 8
    assert 384 <= cuda["decode"].above_start_mib < 384 + 8
    t = result.images[0].timing["cuda"]["decode"]
    assert t.n == 2 and len(t.host_wall_values_s) == 2 and t.host_wall_median_s >= t.median_s * 0.5
    assert result.timing["cuda"]["decode"].images == 1
    mins = result.memory["cuda"].min
    assert 384 <= mins["decode"].min_mib <= 384 + 24 and 128 <= mins["encode"].min_mib <= 128 + 24
    assert mins["decode"].definition and mins["decode"].unlimited_reserved_mib >= mins["decode"].min_mib - 2
    assert result.memory["cuda"].device_uuid
    s = result.environment.gpu_settings
    assert s.cudnn_benchmark is False and s.matmul_allow_tf32 is False and s.cudnn_allow_tf32 is False
    # The cpu→cuda decode of the CPU's bitstream: hungry's output is a constant, identical on both.
    assert result.interop.pair == "cpu→cuda" and result.interop.proxy is False
    assert result.interop.images[0].max_abs_diff_8bit == 0
    assert result.worker.rlimit_data_lifted in (True, False)
