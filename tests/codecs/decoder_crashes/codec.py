"""Fixture: the tiny codec whose decoder dies on a corrupt bitstream the way native code does.

`options.misbehave` says how: "segfault" (a NULL read through ctypes: SIGSEGV), "abort" (SIGABRT) or
"exit" (os._exit(0): the process ends without a result). A bitstream is corrupt when its zlib payload
does not decompress (tiny's format: 4-byte header, then zlib); every other bitstream decodes as tiny's.
"""

import ctypes
import os
import sys
import zlib
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("misbehaving", Path(__file__).resolve().parent.parent / "_misbehaving.py")
misbehaving = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(misbehaving)


def corrupt(bits: bytes) -> bool:
    try:
        zlib.decompress(bits[4:])
        return False
    except zlib.error:
        return True


def die(how: str) -> None:
    print(f"decoder_crashes: corrupt bitstream, dying by {how}", file=sys.stderr, flush=True)
    if how == "segfault":
        ctypes.string_at(0)
    elif how == "abort":
        os.abort()
    os._exit(0)


def build(rate, device):
    codec = misbehaving.tiny.build(rate, device)
    good = codec.decode
    how = rate.options.get("misbehave", "segfault")

    def decode(bits):
        if corrupt(bits):
            die(how)
        return good(bits)

    codec.decode = decode
    return codec
