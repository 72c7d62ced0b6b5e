"""The GPU phase's logic, tested on the CPU with fakes (issue 19): the OOM type through `_call`, the
minimum-memory bisection on a fake caching allocator, peaks that hold no earlier output, the order of
CUDA start-up against the CPU figures, the GPU phase as its own phase, the settings the cpu→cuda decode
runs under, the CUDA instance checked against the CPU one, NVML by UUID, and the limits on GPU machines.
The same paths on a real device: tests/test_gpu.py and benchmarks/gpu_check.sh."""

from __future__ import annotations

import gc
import mmap
import os
import resource
import shutil
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import psutil
import pytest
import torch
from torch import nn

from profiler import memory, runner, timing, worker
from profiler.conditions import CountingSpec, ImageSpec, TestConditions, TimingSpec
from profiler.errors import SubmissionError
from profiler.images import TestImage

from conftest import CODECS

MIB = 1024 * 1024


# -- a fake caching allocator -------------------------------------------------------------------------

class FakeCuda:
    """The allocator interface of memory.min_cuda_memory (TorchCuda), simulated: reserved memory grows
    in `segment`-sized steps and an allocation whose reserved total would pass the cap raises torch's
    OutOfMemoryError, like the caching allocator under set_per_process_memory_fraction."""

    def __init__(self, before: int, segment: int = 20 * MIB, total: int = 80 * 1024 * MIB):
        self.allocated, self.segment, self.total_bytes = before, segment, total
        self.reserved = self._round(before)
        self.cap = None
        self.peak_allocated = self.peak_reserved = 0
        self.caps_seen: list[int | None] = []

    def _round(self, n: int) -> int:
        return -(-n // self.segment) * self.segment

    def alloc(self, n: int) -> None:
        need = self.allocated + n
        res = max(self.reserved, self._round(need))
        if self.cap is not None and res > self.cap:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {n // MIB} MiB")
        self.allocated, self.reserved = need, res
        self.peak_allocated = max(self.peak_allocated, need)
        self.peak_reserved = max(self.peak_reserved, res)

    def free(self, n: int) -> None:
        self.allocated -= n

    def settle(self) -> None:
        self.reserved = self._round(self.allocated)

    def reset_peaks(self) -> None:
        self.peak_allocated, self.peak_reserved = self.allocated, self.reserved

    def set_limit(self, limit):
        self.caps_seen.append(limit)
        self.cap = limit


class Calls:
    """A fake codec on the fake allocator: encode needs 300 + 50 MiB at once, decode 200 MiB."""

    def __init__(self, cuda: FakeCuda, leak: int = 0):
        self.cuda, self.leak = cuda, leak
        self.encoder = nn.Identity()
        self.decoder = nn.Identity()

    def encode(self, x=None):
        self.cuda.alloc(300 * MIB)
        try:                       # a tensor's memory is freed when the exception unwinds its frame
            self.cuda.alloc(50 * MIB)
            self.cuda.free(50 * MIB)
        finally:
            self.cuda.free(300 * MIB)
        return b"bits"

    def decode(self, bits=None):
        self.cuda.alloc(200 * MIB)
        self.cuda.free(200 * MIB - self.leak)
        return torch.zeros(1, 3, 4, 4)


class Allocator:
    """FakeCuda behind TorchCuda's method names (memory.min_cuda_memory's `cuda` argument)."""

    def __init__(self, fake: FakeCuda):
        self.f = fake

    def total(self):
        return self.f.total_bytes

    def settle(self):
        self.f.settle()

    def allocated(self):
        return self.f.allocated

    def reset_peaks(self):
        self.f.reset_peaks()

    def peaks(self):
        return self.f.peak_allocated, self.f.peak_reserved

    def set_limit(self, limit):
        self.f.set_limit(limit)


# -- item 1: OOM trials are "does not fit", never a failed rate point ----------------------------------

def test_call_keeps_the_cuda_oom_type():
    def decode():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(torch.OutOfMemoryError) as info:
        worker._call("decode", decode)
    assert isinstance(info.value, SubmissionError) and info.value.stage == "decode"
    assert "OutOfMemoryError" in str(info.value) and "Tried to allocate" in info.value.traceback_text
    # Other exceptions stay plain SubmissionErrors.
    with pytest.raises(SubmissionError) as other:
        worker._call("decode", lambda: 1 / 0)
    assert not isinstance(other.value, torch.OutOfMemoryError)


def test_bisection_through_call_on_a_fake_allocator():
    """Weights 100 MiB allocated before; encode peaks at 100 + 350 = 450 MiB allocated, 460 MiB reserved
    (20 MiB segments). Bounds: low 450 (fails), high 460 (the uncapped reserved peak, fits). Halving to
    2 MiB: 455 no, 457.5 no, 458.75 no → (458.75, 460]: minimum 460, largest failing 458.75, 6 runs
    (uncapped, 460, 450, 455, 457.5, 458.75)."""
    f = FakeCuda(100 * MIB)
    codec = Calls(f)
    out = memory.min_cuda_memory(lambda: worker._call("encode", codec.encode), "cuda", cuda=Allocator(f))
    assert out["min_mib"] == 460 and out["largest_failing_mib"] == 458.75 and out["trials"] == 6
    assert (out["unlimited_allocated_mib"], out["unlimited_reserved_mib"]) == (450, 460)
    assert (out["low_mib"], out["high_mib"], out["allocated_before_mib"]) == (450, 460, 100)
    assert "reserved" in out["definition"] and "PYTORCH_CUDA_ALLOC_CONF" in out["definition"]
    assert f.cap is None and f.caps_seen[-1] is None      # the cap is lifted afterwards
    assert f.allocated == 100 * MIB


def test_bisection_that_cannot_finish_says_why():
    f = FakeCuda(100 * MIB)
    leaky = Calls(f, leak=8 * MIB)
    with pytest.raises(memory.BisectionFailed, match=r"\+8.0 MiB stay allocated"):
        memory.min_cuda_memory(leaky.decode, "cuda", cuda=Allocator(f))
    assert f.cap is None

    def broken():
        raise ValueError("not an allocation failure")

    with pytest.raises(ValueError):
        memory.min_cuda_memory(broken, "cuda", cuda=Allocator(FakeCuda(0)))


def _no_cuda_calls(monkeypatch):
    for name in ("synchronize", "empty_cache"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, **k: None)


def test_min_gpu_memory_records_a_failed_search_as_not_measured(monkeypatch):
    _no_cuda_calls(monkeypatch)
    f = FakeCuda(100 * MIB)
    monkeypatch.setattr(memory, "TorchCuda", lambda device: Allocator(f))
    img = TestImage("small", np.zeros((8, 8, 3), np.uint8))
    big = TestImage("big", np.zeros((16, 16, 3), np.uint8))
    out, missing = worker._min_gpu_memory(Calls(f), [img, big], torch.device("cpu"))
    assert missing == {}
    # encode as above; decode: 100 + 200 = 300 allocated and reserved: low = high = 300 (uncapped + 300: 2 runs).
    assert out["encode"]["image"] == "big" and out["encode"]["min_mib"] == 460
    assert out["decode"]["min_mib"] == 300 and out["decode"]["trials"] == 2 and out["decode"]["largest_failing_mib"] is None

    f2 = FakeCuda(100 * MIB)
    monkeypatch.setattr(memory, "TorchCuda", lambda device: Allocator(f2))
    out, missing = worker._min_gpu_memory(Calls(f2, leak=4 * MIB), [big], torch.device("cpu"))
    assert set(out) == {"encode"}
    code, reason = missing["min_gpu_memory"]
    assert code == "failed" and reason.startswith("decode: ") and "stay allocated" in reason


# -- item 4: no earlier output alive during a timed call; the cache emptied before a peak ---------------

class Tracked:
    alive = 0

    def __init__(self):
        Tracked.alive += 1

    def __del__(self):
        Tracked.alive -= 1


def test_time_cpu_drops_the_previous_output():
    seen = []

    def fn():
        seen.append(Tracked.alive)
        return Tracked()

    Tracked.alive = 0
    times, out = timing.time_cpu(fn, 4)
    assert len(times) == 4 and seen == [0, 0, 0, 0] and isinstance(out, Tracked)


class FakeEvent:
    def __init__(self, enable_timing=False):
        self.t = None

    def record(self):
        import time
        self.t = time.perf_counter()

    def elapsed_time(self, end):
        return (end.t - self.t) * 1000.0


def test_time_cuda_drops_the_previous_output_and_times_beside_events(monkeypatch):
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    seen = []

    def fn():
        seen.append(Tracked.alive)
        import time
        time.sleep(0.005)
        return Tracked()

    Tracked.alive = 0
    times, _ = timing.time_cuda(fn, 3)
    assert seen == [0, 0, 0] and len(times) == 3 and min(times) >= 0.005
    events, walls, _ = timing.time_cuda_both(fn, 2)
    assert len(events) == len(walls) == 2 and all(w >= e for e, w in zip(events, walls))


def test_event_wall_gap_flags():
    assert timing.event_wall_gap(0.010, 0.0102) == ""                      # 2 %: no flag
    assert timing.event_wall_gap(0.0001, 0.0004) == ""                     # 0.3 ms: below 0.5 ms
    flag = timing.event_wall_gap(0.010, 0.020)
    assert "+10.00 ms" in flag and "other streams" in flag


def test_cuda_peak_begin_empties_the_cache_before_the_reset(monkeypatch):
    calls = []
    monkeypatch.setattr(memory.gc, "collect", lambda: calls.append("collect"))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: calls.append("synchronize"))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a: calls.append("reset"))
    memory.cuda_peak_begin("cuda")
    assert calls == ["collect", "synchronize", "empty_cache", "reset"]


# -- item 9: the CUDA instance must be the CPU one, on the GPU -----------------------------------------

def _codec(seed=0):
    torch.manual_seed(seed)
    return SimpleNamespace(encoder=nn.Linear(3, 2), decoder=nn.Conv2d(2, 3, 1))


def test_cuda_instance_problem():
    a, b = _codec(), _codec()
    assert worker.cuda_instance_problem(a, b, device_type="cpu") is None
    # A codec that ignores `device`: its tensors are on the CPU.
    assert "ignores the device" in worker.cuda_instance_problem(a, b, device_type="cuda")
    c = _codec()
    with torch.no_grad():
        c.decoder.weight[0, 0, 0, 0] += 1e-3
    assert worker.cuda_instance_problem(a, c, device_type="cpu").startswith(
        "decoder.weight differs between the CPU and the cpu instance: not the same weights")
    d = _codec()
    d.decoder = d.decoder.half()
    assert "float16" in worker.cuda_instance_problem(a, d, device_type="cpu")


# -- the worker with a pretended GPU (items 2, 3, 8, 9) ------------------------------------------------

def _job(directory, devices=("cpu", "cuda")) -> dict:
    cond = TestConditions(images=ImageSpec(builtin=("chelsea",)), counting=CountingSpec(resolutions=()),
                          timing=TimingSpec(repeats=1, warmup=1, devices=tuple(devices)))
    return {"submission": str(directory), "rate_index": 0, "conditions": cond.to_dict(),
            "devices": list(devices), "seed": 0}


@pytest.fixture
def gpu_flags():
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    yield
    (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
     torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) = saved


@pytest.fixture
def pretend_gpu(monkeypatch, gpu_flags):
    """torch says one CUDA device exists; the crosscheck is skipped (it is not what these tests are about)."""
    calls = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: calls.append("device_count") or 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: calls.append("is_available") or True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(worker, "crosscheck_codec", lambda codec: (None, {}))
    monkeypatch.setattr(memory, "nvml_all_used_mib", lambda: None, raising=False)   # absent before #19
    return calls


@pytest.fixture
def ignores_device(tmp_path):
    """tests/codecs/tiny with a build() that puts the codec on the CPU whatever device it is given."""
    d = tmp_path / "ignores"
    shutil.copytree(CODECS / "tiny", d)
    # Its own module name: the worker imports the entry module by name, and this process already holds
    # tiny's `codec` module from other in-process runs.
    code = (d / "codec.py").read_text() + textwrap.dedent("""

        def build(rate, device):
            return TinyCodec(rate.options.get("gain", 8.0), torch.device("cpu"))
        """)
    (d / "codec.py").unlink()
    (d / "ignores_device_codec.py").write_text(code)
    manifest = d / "submission.toml"
    manifest.write_text(manifest.read_text().replace('entry = "codec:build"', 'entry = "ignores_device_codec:build"'))
    return d


def _cpu_kept(result):
    assert result.ok, result.error
    pic = result.images[0]
    assert pic.timing["cpu"]["decode"].n == 1 and pic.memory["cpu"]["decode"].peak_mib > 0
    assert "cuda" not in pic.timing and "cuda" not in result.timing
    assert result.timing["cpu"]["decode"].images == 1


def test_build_failing_on_cuda_keeps_the_cpu_figures(pretend_gpu):
    """tiny's build() moves its modules to CUDA: on this CPU-only torch that raises. The GPU phase
    fails, the rate point does not."""
    result = worker.run_job(_job(CODECS / "tiny"))
    _cpu_kept(result)
    nm = result.not_measured["gpu"]
    assert nm.code == "failed" and nm.reason.startswith("build on cuda: ")
    assert result.not_measured["interop"].code == "failed"


def test_codec_that_ignores_the_device_has_no_gpu_figures(pretend_gpu, ignores_device):
    result = worker.run_job(_job(ignores_device))
    _cpu_kept(result)
    nm = result.not_measured["gpu"]
    assert nm.code == "failed" and "ignores the device" in nm.reason and "encoder." in nm.reason
    assert "cuda" not in result.memory


def test_interop_decode_runs_under_the_gpu_settings(pretend_gpu, ignores_device, monkeypatch):
    seen = []

    def fake_interop(codec, build, rate, images, devices, *args, **kw):
        seen.append({"cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                     "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                     "cudnn_benchmark": torch.backends.cudnn.benchmark})
        return {"pair": "cpu→cuda", "proxy": False, "images": []}

    monkeypatch.setattr(worker, "measure_interop", fake_interop)
    monkeypatch.setattr(worker, "cuda_instance_problem", lambda a, b: None, raising=False)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    torch.backends.cudnn.allow_tf32 = True          # torch's default, which the old order decoded with
    torch.backends.cuda.matmul.allow_tf32 = True
    result = worker.run_job(_job(ignores_device))
    assert seen == [{"cudnn_allow_tf32": False, "matmul_allow_tf32": False, "cudnn_benchmark": False}]
    assert result.ok, result.error
    assert result.interop.pair == "cpu→cuda"
    s = result.environment.gpu_settings
    assert s is not None and not (s.cudnn_allow_tf32 or s.matmul_allow_tf32 or s.cudnn_benchmark)
    # The timed runs then fail on this CPU-only torch: recorded, not a failed rate point.
    assert result.not_measured["gpu"].code == "failed"
    assert result.not_measured["gpu"].reason.startswith("GPU timing: ")


# -- the GPU phase checks the decoded picture as the CPU phase does (issue 18, item 4) ------------------

BROKEN_ON_GPU = """

def build(rate, device):
    codec = TinyCodec(rate.options.get("gain", 8.0), torch.device("cpu"))
    if torch.device(device).type == "cuda":      # good pictures on the CPU, {what} ones from the GPU build
        good = codec.decode

        def decode(bits):
            x = good(bits)
            {bad}
        codec.decode = decode
    return codec
"""

BAD_GPU_OUTPUTS = {"nan": ("x[0, 0, 0, :3] = float('nan'); return x", "decode: decode() returned 3 non-finite value(s)"),
                   "uint8": ("return (x * 255).round().to(torch.uint8)", "decode: decode() must return floats in [0, 1], got uint8"),
                   "shape": ("return x[..., :-2]", "decode: decode() must return a tensor of shape (1, 3, ")}


def _gpu_codec(tmp_path, what):
    d = tmp_path / f"gpu_{what}"
    shutil.copytree(CODECS / "tiny", d)
    module = f"broken_on_gpu_{what}"
    (d / "codec.py").rename(d / f"{module}.py")
    code = BROKEN_ON_GPU.format(what=what, bad=BAD_GPU_OUTPUTS[what][0] if what in BAD_GPU_OUTPUTS else "return x")
    with (d / f"{module}.py").open("a") as fh:
        fh.write(code)
    manifest = d / "submission.toml"
    manifest.write_text(manifest.read_text().replace('entry = "codec:build"', f'entry = "{module}:build"'))
    return d


@pytest.fixture
def gpu_reaches_timing(pretend_gpu, monkeypatch):
    """The pretended GPU gets as far as the timed runs: the instance check and the interop decode are
    faked, the pictures stay CPU tensors, and the first allocator call of a timed part says where it got."""
    monkeypatch.setattr(worker, "cuda_instance_problem", lambda a, b: None)
    monkeypatch.setattr(worker, "measure_interop", lambda *a, **k: {"pair": "cpu→cuda", "proxy": False, "images": []})
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a: 0)
    monkeypatch.setattr(TestImage, "tensor", lambda self, device="cpu": torch.from_numpy(
        np.ascontiguousarray(self.pixels)).permute(2, 0, 1).float().div_(255.0).unsqueeze(0))

    def reached(device):
        raise RuntimeError("reached the timed runs")

    monkeypatch.setattr(memory, "cuda_peak_begin", reached)


@pytest.mark.parametrize("what", list(BAD_GPU_OUTPUTS))
def test_a_broken_gpu_picture_fails_the_gpu_figures_as_the_submissions(gpu_reaches_timing, tmp_path, what):
    result = worker.run_job(_job(_gpu_codec(tmp_path, what)))
    _cpu_kept(result)     # the CPU figures (good pictures there) are kept; the rate point is not failed
    nm = result.not_measured["gpu"]
    assert nm.code == "failed", nm
    assert nm.reason.startswith("GPU timing: " + BAD_GPU_OUTPUTS[what][1]), nm.reason
    assert nm.reason.endswith("(the submission's code, on the GPU)")
    assert "cuda" not in result.memory and "interop" not in result.not_measured


def test_a_good_gpu_picture_passes_the_check(gpu_reaches_timing, tmp_path):
    """The control: the same fakes and a codec whose GPU pictures are good get past the check."""
    result = worker.run_job(_job(_gpu_codec(tmp_path, "good")))
    _cpu_kept(result)
    assert result.not_measured["gpu"].reason == "GPU timing: RuntimeError: reached the timed runs"


def test_cuda_image_refuses_a_broken_first_decode_before_any_timed_run():
    class Codec:
        def encode(self, x):
            return b"bits"

        def decode(self, bits):
            return torch.full((1, 3, 8, 8), float("inf"))

    img = TestImage("small", np.zeros((8, 8, 3), np.uint8))
    cond = TestConditions(timing=TimingSpec(repeats=1, warmup=1))
    with pytest.raises(SubmissionError) as info:
        worker._cuda_image(Codec(), img, cond, torch.device("cpu"), 0.0, None, None)
    assert info.value.stage == "decode" and "192 non-finite value(s)" in str(info.value)


def test_cuda_is_not_initialised_before_the_cpu_figures(monkeypatch, gpu_flags):
    order = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: order.append("device_count") or 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: order.append("is_available") or False)
    monkeypatch.setattr(worker, "crosscheck_codec", lambda codec: (None, {}))
    real_exit = memory.CpuPeak.__exit__

    def peak_exit(self, *exc):
        order.append("cpu peak")
        return real_exit(self, *exc)

    monkeypatch.setattr(memory.CpuPeak, "__exit__", peak_exit)
    result = worker.run_job(_job(CODECS / "tiny"))
    assert result.ok, result.error
    assert order.count("cpu peak") == 2                     # encode and decode of the one picture
    last_peak = len(order) - 1 - order[::-1].index("cpu peak")
    assert "is_available" not in order[:last_peak], order
    assert result.not_measured["gpu"].code == "no-device"
    assert result.interop.proxy is True


# -- item 6: NVML by UUID, other processes -------------------------------------------------------------

class UuidNvml:
    """nvidia-ml-py's calls, with handles found by UUID (str) as the maintained binding does."""

    def __init__(self, pids=()):
        self.pids = pids
        self.devices = {"GPU-1111": ("H200", 2048), "MIG-2222": ("H200 MIG 1g.18gb", 512)}

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetHandleByUUID(self, uuid):
        if not isinstance(uuid, str) or uuid not in self.devices:
            raise RuntimeError("NVML_ERROR_NOT_FOUND")
        return uuid

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return "GPU-1111"

    def nvmlDeviceGetUUID(self, h):
        return h

    def nvmlDeviceGetName(self, h):
        return self.devices[h][0]

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(used=self.devices[h][1] * MIB, total=143771 * MIB)

    def nvmlDeviceGetClockInfo(self, h, kind):
        assert kind == memory.NVML_CLOCK_SM
        return 1980

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [SimpleNamespace(pid=p, usedGpuMemory=MIB) for p in self.pids]

    def nvmlSystemGetDriverVersion(self):
        return "580.65.06"


def test_nvml_snapshot_by_uuid_flags_other_processes(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", UuidNvml(pids=(os.getpid(), 4242)))
    snap = memory.nvml_snapshot("1111")          # torch prints the UUID without NVML's "GPU-" prefix
    assert snap["mapped_by"] == "uuid" and snap["used_mib"] == 2048 and snap["name"] == "H200"
    assert snap["sm_clock_mhz"] == 1980 and snap["other_processes"] == [4242] and snap["own_pid_listed"]
    mig = memory.nvml_snapshot("MIG-2222")
    assert mig["used_mib"] == 512 and mig["mapped_by"] == "uuid" and mig["other_processes"] == [4242]
    missing = memory.nvml_snapshot("9999")
    assert set(missing) == {"error"} and "9999" in missing["error"]
    assert memory.nvml_all_used_mib() == {"GPU-1111": 2048.0}


# -- item 10: RLIMIT_DATA for the CPU phase only; the watchdog and file-backed pages -------------------

def test_rlimit_data_is_a_soft_limit_the_worker_lifts(tmp_path):
    script = tmp_path / "limits.py"
    script.write_text(textwrap.dedent("""
        import resource
        print("before", *resource.getrlimit(resource.RLIMIT_DATA), flush=True)
        from profiler.worker import _lift_data_limit
        print("lifted", _lift_data_limit(), *resource.getrlimit(resource.RLIMIT_DATA), flush=True)
        """))
    ex = runner.run_limited(str(script), [], timeout_s=120, memory_limit_mib=4096, rlimit_data=True)
    # The worker's own stdout is kept in its output tail (progress travels on another pipe).
    lines = [line for line in ex.stderr_tail.splitlines() if line.startswith(("before", "lifted"))]
    hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
    assert lines[0].split() == ["before", str(4096 * MIB), str(hard)]
    assert ex.returncode == 0, ex.stderr_tail
    assert lines[1].split() == ["lifted", str(hard != 4096 * MIB), str(hard), str(hard)]
    assert runner.use_rlimit_data(["cpu", "cuda"]) is True


def test_watchdog_counts_anonymous_pages_not_file_backed_ones(tmp_path):
    me = psutil.Process()
    path = tmp_path / "lib.bin"
    path.write_bytes(os.urandom(64 * MIB))
    gc.collect()
    r0 = runner._tree_rss(me)
    with open(path, "rb") as fh:
        m = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        s = sum(m[i] for i in range(0, len(m), 4096))     # every page resident, file-backed
        r1 = runner._tree_rss(me)
        m.close()
    assert s >= 0
    assert r1 - r0 < 16 * MIB, (r1 - r0) / MIB
    anon = np.ones(64 * MIB, np.uint8)                  # written: 64 MiB anonymous
    r2 = runner._tree_rss(me)
    assert r2 - r1 >= 56 * MIB, (r2 - r1) / MIB
    del anon
