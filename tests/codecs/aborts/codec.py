"""Fixture: at 1 bpp, encode kills the process the way a native crash does (os.abort → SIGABRT)."""

import os
import sys
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("misbehaving", Path(__file__).resolve().parent.parent / "_misbehaving.py")
misbehaving = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(misbehaving)


def _bad():
    print("acme-codec: native entropy coder failed an assertion", file=sys.stderr, flush=True)
    os.abort()


def build(rate, device):
    return misbehaving.build_misbehaving(rate, device, _bad)
