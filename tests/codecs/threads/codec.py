"""The tiny codec (tests/codecs/tiny/codec.py) that writes down, in its own encode() and decode(), how many
torch intra-op threads it runs with: one JSON line per call (call, H, W, threads) appended to the file
named by JPEGAI_TEST_THREADS_LOG. tests/test_cost.py reads it to check that timed calls keep
`timing.threads` while the suite's untimed work around them uses more."""

import importlib.util
import json
import os
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location("tiny_codec", Path(__file__).resolve().parent.parent / "tiny" / "codec.py")
_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tiny)


def _log(call: str, h: int, w: int) -> None:
    path = os.environ.get("JPEGAI_TEST_THREADS_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"call": call, "h": h, "w": w, "threads": torch.get_num_threads()}) + "\n")


class ThreadsCodec(_tiny.TinyCodec):
    def encode(self, image):
        _log("encode", int(image.shape[-2]), int(image.shape[-1]))
        return super().encode(image)

    def decode(self, bits):
        x = super().decode(bits)
        _log("decode", int(x.shape[-2]), int(x.shape[-1]))
        return x


def build(rate, device):
    return ThreadsCodec(rate.options.get("gain", 8.0), device)
