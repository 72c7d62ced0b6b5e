"""Fixture: a codec that writes a cache file into its own submission directory (issue #18, item 5).

build() appends a line to `cache.bin` next to this file, and the first encode() of each build appends
another: the file appears during the first rate point and changes at every later one. Otherwise the
tiny codec. Tests copy this folder and ../tiny before profiling it (the cache must not land in the source tree).
"""

import importlib.util
import os
from pathlib import Path

_spec = importlib.util.spec_from_file_location("tiny_for_caching", Path(__file__).resolve().parent.parent / "tiny" / "codec.py")
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)

CACHE = Path(__file__).resolve().with_name("cache.bin")


def _append(text: str) -> None:
    with CACHE.open("a") as fh:
        fh.write(text + "\n")


def build(rate, device):
    _append(f"build {rate.target_bpp} pid {os.getpid()}")
    codec = tiny.build(rate, device)
    good_encode = codec.encode
    first = [True]

    def encode(image):
        if first[0]:
            first[0] = False
            _append(f"encode {tuple(image.shape)}")
        return good_encode(image)

    codec.encode = encode
    return codec
