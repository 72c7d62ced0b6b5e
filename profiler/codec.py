"""The interface submissions implement, and small helpers for writing one.

A submission's entry callable is `build(rate: RatePoint, device: torch.device) -> Codec`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F


@runtime_checkable
class Codec(Protocol):
    """What the suite needs from a learned image codec.

    - `encoder`: a module holding every network the encoder runs; `decoder` likewise. A network both
      sides run (a hyper decoder) belongs to both.
    - `encode(image)`: image is float32 [1, 3, H, W] in [0, 1] on the codec's device; returns the
      complete bitstream.
    - `decode(bitstream)`: the reconstruction, float32 [1, 3, H, W], same shape as the original.
    """

    encoder: torch.nn.Module
    decoder: torch.nn.Module

    def encode(self, image: torch.Tensor) -> bytes: ...

    def decode(self, bitstream: bytes) -> torch.Tensor: ...


@runtime_checkable
class CountableNetworks(Protocol):
    """Optional: the codec's networks without entropy coding, so they can be counted at any resolution
    on the meta device (no activation is allocated; profiler/counting/meta.py).

    - `encode_networks(image)`: `image` is `[1, 3, H, W]` on any device (meta included), original size;
      runs every network `encode()` runs, on the shapes `encode()` would use (pad as `encode()` pads),
      with rounding in place of the quantiser and no entropy coder; returns the latents, in any form
      (tensors, tuples, dicts), including every network output the entropy coder would use.
    - `decode_networks(latents)`: runs every network `decode()` runs on those latents; returns the image,
      or a tuple/dict holding it and every other network output (entropy parameters).

    Return every network's output: tracing counters (fvcore) drop networks whose outputs are unused.

    No `.item()`, no data-dependent Python and no numpy inside them. A serial (autoregressive) context
    loop may be replaced by its dense equivalent when it executes the same multiply-accumulates. The
    suite checks the decoder's meta count against the real `decode()` count on a test image and
    reports a disagreement.
    """

    def encode_networks(self, image: torch.Tensor): ...

    def decode_networks(self, latents): ...


@runtime_checkable
class LatentDecoder(Protocol):
    """Optional: what compressed-domain tasks (submission.toml `[[tasks]]`, profiler/tasks.py) consume.

    - `decode_latents(bitstream)`: entropy decoding and whatever networks produce the representation a
      task network takes (a hyper decoder, a dequantisation), **without the synthesis transform**; returns
      that representation (a tensor, a tuple or a dict), which is handed to the task network's `forward`.
    - `synthesis` (recommended): the synthesis-transform module. The suite counts it as its own scope and
      refuses a latent pipeline in which it ran; without it, scopes named `g_s` are taken as synthesis.
    """

    def decode_latents(self, bitstream: bytes): ...


def check_codec(obj: object) -> list[str]:
    """What is missing from an object that should be a Codec (empty when it is one)."""
    problems = []
    for part in ("encoder", "decoder"):
        if not isinstance(getattr(obj, part, None), torch.nn.Module):
            problems.append(f"`{part}` is not a torch.nn.Module")
    for fn in ("encode", "decode"):
        if not callable(getattr(obj, fn, None)):
            problems.append(f"`{fn}` is not callable")
    return problems


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad [N, C, H, W] on the right and bottom (replicate) to a multiple; returns the original (H, W)."""
    h, w = x.shape[-2:]
    ph = (multiple - h % multiple) % multiple
    pw = (multiple - w % multiple) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


def crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x[..., : size[0], : size[1]]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("bitstream ends inside a length field")
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, pos


def pack_strings(header: bytes, strings: list[bytes]) -> bytes:
    """header + count + (varint length, bytes) per string: a self-delimiting bitstream with a small
    overhead (one byte per length under 128), which matters at 0.03 bpp."""
    out = [header, _varint(len(strings))]
    for s in strings:
        out.append(_varint(len(s)))
        out.append(s)
    return b"".join(out)


def unpack_strings(data: bytes, header_size: int) -> tuple[bytes, list[bytes]]:
    if len(data) < header_size:
        raise ValueError("bitstream shorter than its header")
    header = data[:header_size]
    n, pos = _read_varint(data, header_size)
    strings = []
    for _ in range(n):
        length, pos = _read_varint(data, pos)
        if pos + length > len(data):
            raise ValueError("bitstream truncated")
        strings.append(data[pos: pos + length])
        pos += length
    if pos != len(data):
        raise ValueError(f"bitstream has {len(data) - pos} trailing bytes")
    return header, strings
