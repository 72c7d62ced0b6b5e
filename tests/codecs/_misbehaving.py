"""Shared by the misbehaving fixture codecs (raises/, aborts/, hangs/, overallocates/, bad_output/).

Each fixture is a two-rate-point submission built on the tiny codec; at the rate point whose options
say `misbehave = true`, the method named by `where` does the fixture's bad thing. The fixture's own
codec.py loads this file by path (a submission may only import its own directory's modules).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tiny = _load("tiny_codec_for_fixtures", Path(__file__).resolve().parent / "tiny" / "codec.py")


def build_misbehaving(rate, device, bad_thing):
    """The tiny codec; at a misbehaving rate point `encode` calls `bad_thing()` first."""
    codec = tiny.build(rate, device)
    if rate.options.get("misbehave"):
        good_encode = codec.encode

        def encode(image):
            bad_thing()
            return good_encode(image)

        codec.encode = encode
    return codec


def build_bad_decoder(rate, device, bad_output):
    """The tiny codec; at a rate point with `misbehave = "<name>"`, `decode` returns
    `bad_output(name, good_picture)` instead of its good picture (bad_output/, chatty/)."""
    codec = tiny.build(rate, device)
    what = rate.options.get("misbehave")
    if what:
        good_decode = codec.decode

        def decode(bits):
            return bad_output(what, good_decode(bits))

        codec.decode = decode
    return codec
