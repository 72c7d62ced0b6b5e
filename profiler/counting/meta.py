"""Counting the codec's networks at any resolution without computing (meta device).

A meta tensor has a shape and a dtype but no storage: every aten op still runs its shape function, so
the dispatch-level counter sees the same ops with the same shapes as on real tensors, and a 3840×2160
count allocates no activation (complexity-facts.md §4).

What runs on meta is the codec's `encode_networks`/`decode_networks` (profiler/codec.py,
`CountableNetworks`), on a copy of the codec whose parameters and buffers are meta tensors (the real
codec is not touched and no weight is copied). The real `encode()`/`decode()` stay counted on real
tensors by the worker: entropy coders and data-dependent code need values.

Which way each resolution and part is counted (shared with an earlier rate point, a test picture's own
count, meta networks, a replay of the real calls, a real call) is decided in counting/resolutions.py;
`count_at` here is the networks-or-real-call path of one resolution. Its fallbacks, each recorded in the
entry's `method` and `note`:
- the meta run fails → the same networks on real tensors (zeros) at that resolution;
- the codec has no `encode_networks`/`decode_networks` → the real `encode()`/`decode()` of a fixed noise
  image at that resolution (noise: the highest-entropy content; data-dependent decoders then run their
  most expensive path as far as content can make them).
"""

from __future__ import annotations

import copy
import time
import traceback
from typing import Any

import torch

from ..codec import CountableNetworks
from .conventions import figure, kmac_per_pixel
from .engine import CountResult, OpCounter


def meta_copy(codec: Any) -> Any:
    """A deep copy of `codec` whose parameters and buffers (in `encoder`/`decoder` and any other module
    it holds) are meta tensors. Weights are not copied: each one is mapped straight to its meta twin."""
    memo: dict[int, Any] = {}
    seen: set[int] = set()
    modules = [m for m in vars(codec).values() if isinstance(m, torch.nn.Module)]
    for mod in modules:
        for t in list(mod.parameters()) + list(mod.buffers()):
            if id(t) in seen:
                continue
            seen.add(id(t))
            twin = t.detach().to("meta")
            memo[id(t)] = torch.nn.Parameter(twin, requires_grad=t.requires_grad) if isinstance(
                t, torch.nn.Parameter) else twin
    return copy.deepcopy(codec, memo)


def count_networks(codec: Any, width: int, height: int, device: str = "meta"
                   ) -> tuple[CountResult, CountResult]:
    """(encoder count, decoder count) of the codec's networks for a width×height image on `device`."""
    image = torch.zeros(1, 3, height, width, device=device)
    return _count_parts(codec, codec.encode_networks, codec.decode_networks, image)


def count_real_calls(codec: Any, width: int, height: int, need: tuple[str, ...] = ("encoder", "decoder"),
                     record: bool = False) -> tuple[CountResult | None, CountResult | None]:
    """(encoder, decoder) counts of the real encode()/decode() of a fixed noise image; a part not in
    `need` is not counted (None; the encoder still runs when the decoder is needed, uncounted)."""
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, height, width, generator=gen)
    return _count_parts(codec, codec.encode, codec.decode, image, need, record)


def _count_parts(codec: Any, encode, decode, image: torch.Tensor, need: tuple[str, ...] = ("encoder", "decoder"),
                 record: bool = False) -> tuple[CountResult | None, CountResult | None]:
    """`decode(encode(image))`, the encoder's call and the decoder's call each counted on its own (only
    the parts in `need`; the decoder is not run when it is not needed)."""
    enc_res = dec_res = None
    with torch.no_grad():
        if "encoder" in need:
            enc = OpCounter({"encoder": codec.encoder}, "encoder", record=record)
            with enc:
                latents = encode(image)
            enc_res = enc.result()
        else:
            latents = encode(image)
        if "decoder" in need:
            dec = OpCounter({"decoder": codec.decoder}, "decoder", record=record)
            with dec:
                decode(latents)
            dec_res = dec.result()
    return enc_res, dec_res


def _why(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" ({frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})" if frame else ""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{where}"


def entry(width: int, height: int, enc: CountResult | None, dec: CountResult | None, method: str,
          seconds: float, note: str = "") -> dict:
    """One resolution entry (`Resolution` in the report): each part's whole count, as a picture's counts."""
    out: dict = {"width": width, "height": height, "method": method, "seconds": round(seconds, 4), "note": note}
    for part, res in (("encoder", enc), ("decoder", dec)):
        out[part] = None if res is None else res.to_dict()
    return out


def count_at(codec: Any, width: int, height: int, meta_twin: Any | None) -> dict:
    """Count one resolution: meta if possible, then the fallbacks; never raises."""
    notes = []
    if meta_twin is not None:
        t0 = time.perf_counter()
        try:
            enc, dec = count_networks(meta_twin, width, height, "meta")
            return entry(width, height, enc, dec, "meta", time.perf_counter() - t0)
        except Exception as exc:   # the codec's own code: say why and fall back
            notes.append(f"meta device failed: {_why(exc)}")
    if isinstance(codec, CountableNetworks):
        t0 = time.perf_counter()
        try:
            enc, dec = count_networks(codec, width, height, "cpu")
            return entry(width, height, enc, dec, "real tensors (networks)", time.perf_counter() - t0,
                         "; ".join(notes))
        except Exception as exc:
            notes.append(f"networks on real tensors failed: {_why(exc)}")
    else:
        notes.append("codec has no encode_networks/decode_networks (profiler/codec.py CountableNetworks)")
    t0 = time.perf_counter()
    try:
        enc, dec = count_real_calls(codec, width, height)
        return entry(width, height, enc, dec, "real encode()/decode() of a noise image",
                     time.perf_counter() - t0, "; ".join(notes))
    except Exception as exc:
        notes.append(f"real encode()/decode() failed: {_why(exc)}")
    return entry(width, height, None, None, "not counted", 0.0, "; ".join(notes))


def meta_agreement(codec: Any, meta_twin: Any, image_name: str, width: int, height: int, real_macs: int) -> dict:
    """The decoder's networks counted on meta at a test image's size against the real decode() count
    of that image: they must agree exactly where both apply (a non-autoregressive decoder, or one whose
    serial loop adds up to its dense equivalent)."""
    try:
        _, dec = count_networks(meta_twin, width, height, "meta")
    except Exception as exc:
        return {"image": image_name, "agree": None, "note": f"meta device failed: {_why(exc)}"}
    return {"image": image_name, "width": width, "height": height,
            "meta_macs_decoder": dec.macs, "real_macs_decoder": real_macs, "agree": dec.macs == real_macs}
