"""Parameter counts: per part, per model, and the total over rate points with shared tensors once.

Within one model, a tensor reachable from both the encoder and the decoder (a hyper decoder) is counted
once for the model, by storage identity. Across rate points (each built in its own worker process) a
tensor is identified by a fingerprint of its name, shape, dtype and bytes: rate points that load the
same weights share the fingerprint and the total counts them once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterable

import torch


@dataclass(frozen=True)
class ModelParams:
    encoder: int                        # parameters the encoder holds
    decoder: int                        # parameters the decoder holds
    model: int                          # union of both (shared tensors once)
    buffers_decoder: int = 0            # non-parameter tensors the decoder needs (e.g. CDF tables)
    dtypes: dict = field(default_factory=dict)   # part → {dtype: numel}
    fingerprints: dict = field(default_factory=dict)  # fingerprint → numel, for the cross-rate total


def _unique_params(module: torch.nn.Module) -> dict[int, tuple[str, torch.nn.Parameter]]:
    """Parameters keyed by storage identity (so a module registered twice counts once)."""
    out: dict[int, tuple[str, torch.nn.Parameter]] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        key = _storage_key(p)
        out.setdefault(key, (name, p))
    return out


def _storage_key(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage().data_ptr() + t.storage_offset() * t.element_size()
    except RuntimeError:  # meta or exotic tensors have no data pointer: fall back to identity
        return id(t)


def fingerprint(name: str, t: torch.Tensor) -> str:
    h = hashlib.sha1()
    h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
    h.update(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:20]


def dtype_counts(module: torch.nn.Module) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, p in _unique_params(module).values():
        key = str(p.dtype).replace("torch.", "")
        counts[key] = counts.get(key, 0) + p.numel()
    return counts


def count_model(encoder: torch.nn.Module, decoder: torch.nn.Module) -> ModelParams:
    enc = _unique_params(encoder)
    dec = _unique_params(decoder)
    union = {**enc, **dec}
    dec_param_keys = set(dec)
    buffers = {}
    for name, b in decoder.named_buffers():
        k = _storage_key(b)
        if k not in dec_param_keys:
            buffers.setdefault(k, b)
    fps = {}
    for name, p in union.values():
        fps[fingerprint(name, p)] = p.numel()
    return ModelParams(
        encoder=sum(p.numel() for _, p in enc.values()),
        decoder=sum(p.numel() for _, p in dec.values()),
        model=sum(p.numel() for _, p in union.values()),
        buffers_decoder=sum(b.numel() for b in buffers.values()),
        dtypes={"encoder": dtype_counts(encoder), "decoder": dtype_counts(decoder)},
        fingerprints=fps,
    )


def total_over_rates(models: Iterable[ModelParams]) -> int:
    """Total parameters needed for all rate points: each distinct tensor once."""
    seen: dict[str, int] = {}
    for m in models:
        seen.update(m.fingerprints)
    return sum(seen.values())
