"""Counting a codec without `encode_networks`/`decode_networks` at another resolution by replaying the
ops of a real, counted call on the meta device.

The counted encode()/decode() of a test picture is recorded by the counter (`OpCounter(record=True)`):
every op, grouped by (op, module scope, input shapes and dtypes[, other arguments]) with its number of
calls. To count the part at W×H, each group is mapped to that size and priced with the counter's own
formulas on meta tensors (shapes, no storage, nothing computed):

- the picture as coded at the recording (`coded`, padding included: the counter's largest 3-channel
  output) gives the padding multiple m (the smallest power of two that pads the picture to it), and
  the coded size at W×H (W, H padded to m);
- a constant tensor (a parameter or buffer of the part, or what ops made from those alone, such as a
  masked weight) keeps its shape;
- a tensor dimension d of a 4-D input (NCHW or NHWC) is spatial when d = coded / s + k for a power of
  two s ≤ 64 and a context border k ∈ {0, 2, 4, 6} (a serial decoder's padded latent), and becomes
  ⌈coded' / s⌉ + k; a dimension of another input that is a whole grid (coded_h / s) × (coded_w / s)
  (positions flattened for a Linear or attention) becomes the grid at the new size; any other
  dimension stays;
- a group of at least `LOOP_MIN` calls whose number is c × (coded_h / s) × (coded_w / s) (one loop
  iteration per latent position, the smallest c) is called c × (coded_h' / s) × (coded_w' / s) times;
  fewer calls stay as they are. The shapes of a loop's ops stay too (each iteration works on a window
  of fixed size, such as a 5×5 context crop).

Nothing here is trusted on its own: a recording is used only once its replay at *another* picture's
size reproduces that picture's real count exactly (every module's MACs, vm MACs, biases and element
operations, every MAC-bearing op's calls and MACs, the uncounted ops: `difference`), see
`choose_recording`. The calls of ops that cost nothing (views, aliases) are replayed as recorded and
may differ (a crop that is a no-op at one size).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch.utils._pytree import tree_unflatten

from .engine import CountResult, ScopeCost
from .formulas import DEFAULT, OUTPUT_KW, op_name

POW2 = (1, 2, 4, 8, 16, 32, 64)
BORDERS = (0, 2, 4, 6)
LOOP_MIN = 16
MULTIPLES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ReplayError(Exception):
    """A recording that cannot be replayed at a size (the message says why)."""


@dataclasses.dataclass(frozen=True)
class Recording:
    """One part's recorded call on one picture."""

    picture: str
    width: int
    height: int
    coded: tuple[int, int]          # (H, W) as coded, padding included
    multiple: int                   # the padding multiple inferred from width/height → coded
    groups: dict                    # key → [calls, argument template] (engine.OpCounter._note)
    root: str
    largest: tuple[int, int] | None = None    # the real call's largest 3-channel output (H, W)

    def coded_at(self, width: int, height: int) -> tuple[int, int]:
        m = self.multiple
        return -(-height // m) * m, -(-width // m) * m


def make_recording(picture: str, width: int, height: int, result: CountResult,
                   coded: tuple[int, int] | None = None) -> Recording:
    """The recording of a counted call (`result.recording`); raises ReplayError when it cannot be
    replayed (nothing recorded, ops priced outside the dispatch level, a coded size that is not a
    padding of the picture)."""
    rec = result.recording
    if not rec:
        raise ReplayError("the call was not recorded")
    if rec["unreplayable"]:
        raise ReplayError(f"ops that cannot be replayed: {', '.join(rec['unreplayable'][:3])}")
    hc, wc = coded or result.largest_rgb_hw or (height, width)
    multiple = next((m for m in MULTIPLES if -(-height // m) * m == hc and -(-width // m) * m == wc), None)
    if multiple is None:
        raise ReplayError(f"the picture {width}×{height} is coded at {wc}×{hc}, not a padding of it to a "
                          "power-of-two multiple")
    return Recording(picture, width, height, (hc, wc), multiple, rec["groups"], rec["root"],
                     tuple(result.largest_rgb_hw) if result.largest_rgb_hw else None)


def _spatial(d: int, c: int, c2: int, o: int | None = None, o2: int | None = None) -> int | None:
    """d at coded size c mapped to coded size c2 (or the picture's own size o to o2: a crop back to the
    picture), or None when d is neither o nor c / s + k."""
    if o is not None and d == o and o != c:
        return o2
    for k in BORDERS:
        base = d - k
        if base <= 0 or c % base:
            continue
        s = c // base
        if s in POW2:
            return -(-c2 // s) + k
    return None


def _flattened(d: int, coded: tuple[int, int], coded2: tuple[int, int]) -> int | None:
    """d = (coded_h / s) × (coded_w / s) (a spatial grid flattened into one dimension, as a Linear over
    positions or attention tokens have it) mapped to coded2, or None."""
    (hc, wc), (hc2, wc2) = coded, coded2
    if d < LOOP_MIN:
        return None
    for s in MULTIPLES:
        if hc % s == 0 and wc % s == 0 and (hc // s) * (wc // s) == d:
            return (-(-hc2 // s)) * (-(-wc2 // s))
    return None


def _map_shape(shape: tuple[int, ...], coded: tuple[int, int], coded2: tuple[int, int],
               orig: tuple[int, int] = (0, 0), orig2: tuple[int, int] = (0, 0)) -> tuple[int, ...]:
    if len(shape) != 4:
        return tuple(_flattened(d, coded, coded2) or d for d in shape)
    (hc, wc), (hc2, wc2), (h, w), (h2, w2) = coded, coded2, orig, orig2
    out = list(shape)
    nchw = (_spatial(shape[2], hc, hc2, h, h2), _spatial(shape[3], wc, wc2, w, w2))
    nhwc = (_spatial(shape[1], hc, hc2, h, h2), _spatial(shape[2], wc, wc2, w, w2))
    if None not in nchw:
        out[2], out[3] = nchw
    elif None not in nhwc:
        out[1], out[2] = nhwc
    else:
        if nchw[0] is not None:
            out[2] = nchw[0]
        if nchw[1] is not None:
            out[3] = nchw[1]
    return tuple(out)


def _map_calls(n: int, coded: tuple[int, int], coded2: tuple[int, int]) -> int:
    if n < LOOP_MIN:
        return n
    (hc, wc), (hc2, wc2) = coded, coded2
    best = None
    for s in POW2:
        if hc % s or wc % s:
            continue
        positions = (hc // s) * (wc // s)
        if positions > 1 and n % positions == 0:
            c = n // positions
            if best is None or c < best[0]:
                best = (c, s)
    if best is None:
        return n
    c, s = best
    return c * (-(-hc2 // s)) * (-(-wc2 // s))


def replay(rec: Recording, width: int, height: int, registry=DEFAULT) -> CountResult:
    """The part's count at width×height from the recording (raises ReplayError)."""
    coded2 = rec.coded_at(width, height)
    res = CountResult()
    for key, (n, template) in rec.groups.items():
        kind, func, scope, shapes, _others, why = key
        name = op_name(func._overloadpacket)
        n2 = _map_calls(n, rec.coded, coded2)
        # A loop over latent positions works on a window of fixed size: its shapes stay.
        loop = n2 != n
        mapped = [None if s is None else (s[0] if s[2] or loop else _map_shape(
            s[0], rec.coded, coded2, (rec.height, rec.width), (height, width)), s[1]) for s in shapes]
        if kind == "decomposed":
            res.decomposed[name] = res.decomposed.get(name, 0) + n2
            continue
        if kind == "uncounted":
            res.uncounted[name] = res.uncounted.get(name, 0) + n2
            res.uncounted_why.setdefault(name, why)
            where = res.uncounted_at.setdefault(name, [])
            if len(where) < 5 and scope not in where:
                where.append(scope)
            continue
        cost_scope = res.per_module.setdefault(scope, ScopeCost())
        op = res.ops.setdefault(name, {"calls": 0, "macs": 0})
        op["calls"] += n2
        if kind == "zero":
            continue
        spec, leaves = template
        try:
            args = [torch.empty(m[0], dtype=m[1], device="meta") if m is not None else leaf
                    for m, leaf in zip(mapped, leaves)]
            a, kw = tree_unflatten(args, spec)
            out = func(*a, **kw)
            fn = registry.lookup(func)
            cost = fn(*a, **kw, **{OUTPUT_KW: out})
        except Exception as exc:
            raise ReplayError(f"{name} at {scope} does not replay at {width}×{height}: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
        one = ScopeCost()
        one.add_cost(cost)
        cost_scope.add(ScopeCost(one.macs * n2, one.vm_macs * n2, one.bias * n2,
                                 {k: v * n2 for k, v in one.elements.items()}))
        op["macs"] += one.macs * n2
    if rec.largest is not None:
        (h, w), (hc, wc), (hc2, wc2) = rec.largest, rec.coded, coded2
        res.largest_rgb_hw = (_spatial(h, hc, hc2, rec.height, height) or h,
                              _spatial(w, wc, wc2, rec.width, width) or w)
    return res


def difference(replayed: CountResult, real: dict) -> str | None:
    """The first way a replayed count differs from a real count (a PartCount as a dict), or None."""
    mine = replayed.to_dict()
    if mine["macs"] != real["macs"]:
        return f"{mine['macs']:,} MACs replayed against {real['macs']:,} counted"
    for key in ("per_module", "ops", "uncounted"):
        a, b = mine.get(key, {}), real.get(key, {})
        if key == "per_module":   # scopes that only ran zero-MAC ops are not counts
            a = {k: v for k, v in a.items() if v != _ZERO}
            b = {k: v for k, v in b.items() if v != _ZERO}
        if key == "ops":          # the calls of an op that costs nothing (views, aliases) are not counts
            a = {k: v for k, v in a.items() if v["macs"]}
            b = {k: v for k, v in b.items() if v["macs"]}
        for name in sorted(set(a) | set(b)):
            if a.get(name) != b.get(name):
                return f"{key} {name}: {a.get(name)} replayed against {b.get(name)} counted"
    return None


_ZERO = {"macs": 0, "vm_macs": 0, "bias": 0, "elements": {}}


def choose_recording(part: str, candidates: list[Recording], reals: list[tuple[str, int, int, dict]]
                     ) -> tuple[Recording | None, str]:
    """The first recording whose replay reproduces exactly the real count of every other picture of a
    different coded size in `reals` (name, width, height, real count of this part); and a note saying
    which picture it was recorded on and checked against, or why none was accepted."""
    why = []
    # first the pictures padded in both dimensions: a dimension that is its own coded size cannot tell a
    # crop back to the picture from the coded tensor
    candidates = sorted(candidates, key=lambda r: (r.coded[0] == r.height) + (r.coded[1] == r.width))
    for rec in candidates:
        others = [r for r in reals if r[0] != rec.picture and rec.coded_at(r[1], r[2]) != rec.coded]
        if not others:
            why.append(f"recorded on {rec.picture}: no other picture of a different size to check it against")
            continue
        bad = None
        for name, w, h, real in others:
            try:
                diff = difference(replay(rec, w, h), real)
            except ReplayError as exc:
                diff = str(exc)
            if diff:
                bad = f"recorded on {rec.picture}, replayed at {name} ({w}×{h}): {diff}"
                break
        if bad is None:
            checked = ", ".join(f"{n} ({w}×{h})" for n, w, h, _ in others)
            return rec, (f"{part} ops recorded on {rec.picture} ({rec.width}×{rec.height}), replayed on meta; "
                         f"the replay reproduced the real count of {checked} exactly")
        why.append(bad)
    return None, "; ".join(why) if why else "nothing recorded"
