"""Fixture: the tiny codec whose decoder never returns on a corrupt bitstream (a zlib payload that does
not decompress); every other bitstream decodes as tiny's."""

import sys
import time
import zlib
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("misbehaving", Path(__file__).resolve().parent.parent / "_misbehaving.py")
misbehaving = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(misbehaving)


def build(rate, device):
    codec = misbehaving.tiny.build(rate, device)
    good = codec.decode

    def decode(bits):
        try:
            zlib.decompress(bits[4:])
        except zlib.error:
            print("decoder_hangs: corrupt bitstream, waiting forever", file=sys.stderr, flush=True)
            while True:
                time.sleep(1)
        return good(bits)

    codec.decode = decode
    return codec
