"""Fixture: at 1 bpp, encode raises from deep inside the submission's own code."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("misbehaving", Path(__file__).resolve().parent.parent / "_misbehaving.py")
misbehaving = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(misbehaving)


def _entropy_model_lookup(symbol):
    table = {0: 1, 1: 2}
    return table[symbol]


def _bad():
    _entropy_model_lookup(17)   # KeyError: the submission's bug, with its traceback in the report


def build(rate, device):
    return misbehaving.build_misbehaving(rate, device, _bad)
