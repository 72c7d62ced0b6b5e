"""The tiny codec (tests/codecs/tiny/codec.py) that writes down, in its own encode() and decode(), how many
torch intra-op threads it runs with, the CPUs it may run on, its process and a monotonic timestamp at the
start and end of the call: one JSON line per call (call, H, W, threads, cpus, pid, t0, t1) appended to the
file named by JPEGAI_TEST_THREADS_LOG. tests/test_cost.py reads it to check that timed calls keep
`timing.threads` while the suite's untimed work around them uses more, and tests/test_slots.py that timed
calls run on their timing slot's cores and that two rate points' timed phases never overlap."""

import importlib.util
import json
import os
import time
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location("tiny_codec", Path(__file__).resolve().parent.parent / "tiny" / "codec.py")
_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tiny)


def _log(call: str, h: int, w: int, t0: float) -> None:
    path = os.environ.get("JPEGAI_TEST_THREADS_LOG")
    if path:
        line = json.dumps({"call": call, "h": h, "w": w, "threads": torch.get_num_threads(),
                           "cpus": sorted(os.sched_getaffinity(0)), "pid": os.getpid(),
                           "t0": t0, "t1": time.monotonic()})
        with open(path, "a") as f:
            f.write(line + "\n")


class ThreadsCodec(_tiny.TinyCodec):
    def encode(self, image):
        t0 = time.monotonic()
        bits = super().encode(image)
        _log("encode", int(image.shape[-2]), int(image.shape[-1]), t0)
        return bits

    def decode(self, bits):
        t0 = time.monotonic()
        x = super().decode(bits)
        _log("decode", int(x.shape[-2]), int(x.shape[-1]), t0)
        return x


def build(rate, device):
    return ThreadsCodec(rate.options.get("gain", 8.0), device)
