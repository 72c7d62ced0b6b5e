"""Declared precision of a part: parsing, and checking it against the parameters the codec really holds.

JPEG AI asks for the model precision as floating point, fixed point or integer with N bits. A declaration
is one of: `float16`, `float32`, `float64`, `bfloat16`, `intN`, `uintN`, `fixedN` (N = 1 … 64).

A parameter is consistent with its part's declaration when the values it holds are representable in it:
- `floatN`: a floating dtype of at most N bits (a float32 decoder may keep a float16 table; a float64
  parameter in a part declared float32 is not);
- `bfloat16`: bfloat16 itself (float16 has another exponent range);
- `intN` / `uintN`: an integer dtype of at most N bits with the signedness allowed, **or** a floating
  dtype whose every value is an integer within the N-bit range (integer weights stored in float tensors,
  as integerised networks often keep them);
- `fixedN`: an integer dtype of at most N bits, or floating values that are all multiples of 2⁻ᶠ for one
  f in 0 … N with every value × 2ᶠ inside the signed N-bit range.
Anything else is an offending parameter, named in the report with its dtype, size and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

_RE = re.compile(r"^(?:(float)(16|32|64)|(bfloat)(16)|(u?int)(\d+)|(fixed)(\d+))$")

# Shown when a declaration does not parse.
KNOWN_FORMS = "float16, float32, float64, bfloat16, intN, uintN or fixedN (N = 1 … 64 bits)"


@dataclass(frozen=True)
class Precision:
    kind: str       # "float", "bfloat", "int", "uint", "fixed"
    bits: int

    def __str__(self) -> str:
        return f"{self.kind}{self.bits}"


def parse_precision(text: str) -> Precision | None:
    """The declaration as (kind, bits), or None when it is not a known form with its N given."""
    m = _RE.match(text.strip()) if isinstance(text, str) else None
    if not m:
        return None
    groups = [g for g in m.groups() if g is not None]
    kind, bits = groups[0], int(groups[1])
    if not 1 <= bits <= 64:
        return None
    return Precision(kind, bits)


def _dtype_bits(dtype: torch.dtype) -> int:
    return torch.finfo(dtype).bits if dtype.is_floating_point else torch.iinfo(dtype).bits


def _is_integer_dtype(dtype: torch.dtype) -> bool:
    return not dtype.is_floating_point and not dtype.is_complex and dtype != torch.bool


def _integer_range(bits: int, signed: bool) -> tuple[int, int]:
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)


def _fits_integers(t: torch.Tensor, bits: int, signed: bool) -> bool:
    v = t.detach().double()
    lo, hi = _integer_range(bits, signed)
    return bool(torch.all(v == v.round()) and v.min() >= lo and v.max() <= hi) if v.numel() else True


def _fixed_point_fraction(t: torch.Tensor, bits: int) -> int | None:
    """Smallest f such that every value × 2^f is an integer in the signed `bits` range, or None."""
    v = t.detach().double()
    if v.numel() == 0:
        return 0
    for f in range(0, bits + 1):
        if _fits_integers(v * (2.0 ** f), bits, signed=True):
            return f
    return None


def check_tensor(t: torch.Tensor, declared: Precision) -> str | None:
    """Why `t` is not representable in the declared precision, or None when it is."""
    dt = t.dtype
    name = str(dt).replace("torch.", "")
    if declared.kind == "float":
        if dt.is_floating_point and dt != torch.bfloat16 and _dtype_bits(dt) <= declared.bits:
            return None
        if dt == torch.bfloat16 and declared.bits >= 32:
            return None   # every bfloat16 value is exactly a float32 value
        if _is_integer_dtype(dt) and _dtype_bits(dt) < torch.finfo(_float_dtype(declared.bits)).nmant + 1:
            return None   # small integers are exact in the declared float
        return f"{name} holds values that {declared} cannot represent exactly"
    if declared.kind == "bfloat":
        return None if dt == torch.bfloat16 else f"{name}, declared bfloat16"
    if declared.kind in ("int", "uint"):
        signed = declared.kind == "int"
        if _is_integer_dtype(dt):
            if _dtype_bits(dt) <= declared.bits and (signed or not dt.is_signed):
                return None
            if _fits_integers(t, declared.bits, signed):
                return None
            return f"{name} values outside the {declared} range"
        if _fits_integers(t, declared.bits, signed):
            return None
        return f"{name} with values that are not {declared} integers"
    if declared.kind == "fixed":
        if _is_integer_dtype(dt):
            if _dtype_bits(dt) <= declared.bits or _fits_integers(t, declared.bits, True):
                return None
            return f"{name} values outside the {declared} range"
        if _fixed_point_fraction(t, declared.bits) is not None:
            return None
        return f"{name} with values that are not {declared} fixed-point numbers"
    return f"unknown declared precision {declared}"


def _float_dtype(bits: int) -> torch.dtype:
    return {16: torch.float16, 32: torch.float32, 64: torch.float64}[bits]


def offending_parameters(module: torch.nn.Module, declared_text: str, limit: int = 20) -> dict:
    """Parameters of `module` inconsistent with the declaration.

    Returns {"count": parameters offending, "numel": their elements, "parameters": [{name, dtype, numel,
    reason}] for the first `limit`} — or {"error": why} when the declaration does not parse.
    """
    declared = parse_precision(declared_text)
    if declared is None:
        return {"error": f"unknown precision {declared_text!r} (expected {KNOWN_FORMS})"}
    seen: set[int] = set()
    offending = []
    for name, p in module.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        reason = check_tensor(p, declared)
        if reason is not None:
            offending.append({"name": name, "dtype": str(p.dtype).replace("torch.", ""),
                              "numel": int(p.numel()), "reason": reason})
    return {"count": len(offending), "numel": sum(o["numel"] for o in offending), "parameters": offending[:limit]}


def check_codec_precision(codec, declared: dict[str, str]) -> dict[str, dict]:
    """Per part ("encoder", "decoder"): the offending parameters of that part's module."""
    return {part: offending_parameters(getattr(codec, part), declared.get(part, "")) for part in ("encoder", "decoder")}
