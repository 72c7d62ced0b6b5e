"""Fixture: at 1 bpp, encode never returns (a deadlock or endless loop)."""

import time
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("misbehaving", Path(__file__).resolve().parent.parent / "_misbehaving.py")
misbehaving = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(misbehaving)


def _bad():
    while True:
        time.sleep(0.5)


def build(rate, device):
    return misbehaving.build_misbehaving(rate, device, _bad)
