"""The tiny codec (tests/codecs/tiny: counts and parameters easy to count by hand), three rate points,
writing its own clock: with JPEGAI_STAMPS set to a folder, every encode() and decode() appends one JSON
line to `<folder>/<pid>.jsonl` — the host, the CPUs the process may run on at that moment, and
`time.monotonic()` before and after the call — and takes at least `JPEGAI_STAMP_SLEEP_S` (default 0.05 s),
so two timed phases that overlap are seen to. Without JPEGAI_STAMPS it is the tiny codec.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import time
from pathlib import Path

_spec = importlib.util.spec_from_file_location("_stamped_tiny", Path(__file__).resolve().parent.parent / "tiny" / "codec.py")
_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tiny)
TinyCodec = _tiny.TinyCodec


class StampedCodec(TinyCodec):
    def _stamped(self, call: str, fn, arg):
        folder = os.environ.get("JPEGAI_STAMPS")
        if not folder:
            return fn(arg)
        t0 = time.monotonic()
        out = fn(arg)
        time.sleep(max(0.0, float(os.environ.get("JPEGAI_STAMP_SLEEP_S", "0.05")) - (time.monotonic() - t0)))
        t1 = time.monotonic()
        line = {"call": call, "host": socket.gethostname(), "cpus": sorted(os.sched_getaffinity(0)),
                "t0": t0, "t1": t1, "gain": float(self.encoder.gain[0])}
        with open(Path(folder) / f"{os.getpid()}.jsonl", "a") as fh:
            fh.write(json.dumps(line) + "\n")
        return out

    def encode(self, image):
        return self._stamped("encode", super().encode, image)

    def decode(self, bits):
        return self._stamped("decode", super().decode, bits)


def build(rate, device):
    return StampedCodec(rate.options.get("gain", 8.0), device)
