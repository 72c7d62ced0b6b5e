"""Cross-check of our counts against fvcore and ptflops (both backends), with the modules that explain
every difference.

Each counter runs the same part forward — the codec's `encode_networks` (encoder) or `decode_networks`
(decoder) when it has them (profiler/codec.py), else `codec.encoder(image)` and
`codec.decoder(codec.encoder(image))` — on real tensors of one fixed size (`SIZE`, 256×256 as in
complexity-facts.md §3, so the profile stays cheap), wrapped in a module that holds the part under its
own name, so every counter names modules as we do (`decoder.g_s.1`).

Per part the result holds our strict and vm totals, each counter's total (or why it could not run), the
relative difference to our strict count, and the modules that account for it: where a counter's figure
for a module differs from ours ("ptflops/pytorch: 0 for GDN at decoder.g_s.1"). A difference to fvcore
above `TOLERANCE` that the modules do not account for is flagged.

The other counters are run, never imitated: fvcore 0.1.5 (`FlopCountAnalysis`, jit tracing; counts one
multiply-accumulate as one "flop"), ptflops 0.7.5 `get_model_complexity_info` with `backend="pytorch"`
(module hooks plus its own patching of torch.nn.functional, which it undoes) and `backend="aten"` (a
dispatch mode). Per-module figures come from fvcore's `by_module()`, ptflops aten's per-module table
and ptflops pytorch's per-module `__flops__` (read during a second, module-hooks-only run, as its
per-layer printout does).
"""

from __future__ import annotations

import contextlib
import io
import time
import traceback
from collections import defaultdict
from typing import Any, Callable

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from ..codec import CountableNetworks
from .conventions import figure
from .engine import OpCounter, hierarchical

SIZE = (256, 256)            # width, height of the cross-check input
TOLERANCE = 0.001            # 0.1 %: an unexplained difference to fvcore above it is flagged
COUNTERS = ("fvcore", "ptflops/pytorch", "ptflops/aten")


class PartForward(nn.Module):
    """`fn(*inputs)` as a module holding the part under `name`, returning the tensors of the output."""

    def __init__(self, name: str, part: nn.Module, fn: Callable[..., Any], spec):
        super().__init__()
        self.add_module(name, part)
        self._fn = fn
        self._spec = spec

    def forward(self, *leaves):
        out = self._fn(tree_unflatten(list(leaves), self._spec))
        tensors = tuple(t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))
        return tensors if len(tensors) != 1 else tensors[0]


def part_inputs(codec: Any, width: int, height: int) -> tuple[dict, str]:
    """{part: (module wrapping its forward, input leaves)} and how the forwards were chosen."""
    torch.manual_seed(0)
    image = torch.rand(1, 3, height, width)
    if isinstance(codec, CountableNetworks):
        enc_fn, dec_fn, how = codec.encode_networks, codec.decode_networks, "encode_networks/decode_networks"
    else:
        enc_fn, dec_fn, how = codec.encoder, codec.decoder, "encoder(image) and decoder(encoder(image))"
    with torch.no_grad():
        latents = enc_fn(image)
    parts = {}
    for part, fn, args in (("encoder", enc_fn, image), ("decoder", dec_fn, latents)):
        leaves, spec = tree_flatten(args)
        parts[part] = (PartForward(part, getattr(codec, part), fn, spec).eval(), tuple(leaves))
    return parts, how


def ours(wrapper: PartForward, leaves: tuple, part: str):
    counter = OpCounter({part: getattr(wrapper, part)}, part)
    with torch.no_grad(), counter:
        wrapper(*leaves)
    return counter.result()


def run_fvcore(wrapper: nn.Module, leaves: tuple) -> tuple[int, dict[str, int], dict]:
    from fvcore.nn import FlopCountAnalysis

    fca = FlopCountAnalysis(wrapper, leaves)
    fca.unsupported_ops_warnings(False)
    fca.uncalled_modules_warnings(False)
    fca.tracer_warnings("none")
    total = int(fca.total())
    per = {k: int(v) for k, v in fca.by_module().items() if k}
    return total, per, {"unsupported_ops": dict(fca.unsupported_ops())}


def _ptflops_total(wrapper: nn.Module, leaves: tuple, backend: str) -> int:
    from ptflops import get_model_complexity_info

    err = io.StringIO()
    with contextlib.redirect_stdout(err), contextlib.redirect_stderr(err):
        macs, _ = get_model_complexity_info(wrapper, (1,), input_constructor=lambda _: {"leaves": leaves},
                                            as_strings=False, print_per_layer_stat=False, backend=backend)
    if macs is None:   # ptflops returns (None, None) instead of raising (complexity-facts.md §3)
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        raise RuntimeError(f"ptflops ({backend}) returned no count: {lines[-1] if lines else 'no message'}")
    return int(macs)


class _Splat(nn.Module):
    """ptflops passes a dict of keyword arguments; our wrapper takes positional leaves."""

    def __init__(self, inner: PartForward):
        super().__init__()
        self.inner = inner

    def forward(self, leaves):
        return self.inner(*leaves)


def _strip(per: dict[str, int], prefix: str = "inner.") -> dict[str, int]:
    return {k[len(prefix):]: v for k, v in per.items() if k.startswith(prefix)}


def run_ptflops_pytorch(wrapper: PartForward, leaves: tuple) -> tuple[int, dict[str, int], dict]:
    from ptflops.pytorch_engine import add_flops_counting_methods, is_supported_instance

    splat = _Splat(wrapper)
    total = _ptflops_total(splat, leaves, "pytorch")
    # Per module: ptflops's own module hooks (what its per-layer printout shows), without its patching
    # of torch.nn.functional — those functional counts belong to no module in ptflops.
    model = add_flops_counting_methods(splat)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        model.start_flops_count(ost=out, verbose=False, ignore_list=[])
        try:
            with torch.no_grad():
                splat(leaves)
            self_flops = {name: int(m.__flops__) for name, m in splat.named_modules()
                          if is_supported_instance(m) and hasattr(m, "__flops__")}
        finally:
            model.stop_flops_count()
    inclusive: dict[str, int] = defaultdict(int)
    for name, n in self_flops.items():
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            inclusive[".".join(parts[:i])] += n
    functional = total - sum(self_flops.values())
    return total, _strip(dict(inclusive)), {"outside_modules": functional}


class _Flat(nn.Module):
    """Every module of the part as a direct child (ptflops's aten counter attributes to the children of
    the module it is given, one level deep); dots in names are not allowed in child names."""

    def __init__(self, wrapper: PartForward):
        super().__init__()
        for name, mod in wrapper.named_modules():
            if name:
                self.add_module(name.replace(".", "\u00b7"), mod)


def run_ptflops_aten(wrapper: PartForward, leaves: tuple) -> tuple[int, dict[str, int], dict]:
    from ptflops.aten_engine import FlopCounterMode

    total = _ptflops_total(_Splat(wrapper), leaves, "aten")
    flat = _Flat(wrapper)
    # ptflops registers its module hooks and never removes them: note what is there and remove the rest.
    before = {id(m): (set(m._forward_pre_hooks), set(m._forward_hooks)) for m in flat.children()}
    out = io.StringIO()
    params = {"serialize_params": {"units": None, "precision": 2}, "print_params": {"file": out}}
    try:
        counter = FlopCounterMode(flat, False, False, params)
        with torch.no_grad(), counter:
            wrapper(*leaves)
    finally:
        for m in flat.children():
            pre, post = before[id(m)]
            for k in set(m._forward_pre_hooks) - pre:
                del m._forward_pre_hooks[k]
            for k in set(m._forward_hooks) - post:
                del m._forward_hooks[k]
    per = {name.replace("\u00b7", "."): int(sum(ops.values())) for name, ops in counter.flop_counts.items()
           if name != "Global"}
    return total, per, {}


RUNNERS = {"fvcore": run_fvcore, "ptflops/pytorch": run_ptflops_pytorch, "ptflops/aten": run_ptflops_aten}


def attribute(our_incl: dict[str, int], their_incl: dict[str, int], part: str, types: dict[str, str]
              ) -> tuple[list[dict], int]:
    """Modules whose own difference (theirs − ours, minus what their children already account for) is
    not zero, largest first; and the part of the total difference no module accounts for."""
    names = set(our_incl) | set(their_incl)
    names.discard(part)
    diff = {n: their_incl.get(n, 0) - our_incl.get(n, 0) for n in names | {part}}
    children: dict[str, list[str]] = defaultdict(list)
    for n in names:
        children[n.rsplit(".", 1)[0]].append(n)
    rows = []
    for n in sorted(names):
        own = diff[n] - sum(diff[c] for c in children.get(n, []))
        if own:
            rows.append({"module": n, "type": types.get(n, "?"), "ours": our_incl.get(n, 0),
                         "theirs": their_incl.get(n, 0), "difference": own})
    rows.sort(key=lambda r: (-abs(r["difference"]), r["module"]))
    unattributed = diff[part] - sum(diff[c] for c in children.get(part, []))
    return rows, unattributed


def explain(counter: str, rows: list[dict], limit: int = 4) -> list[str]:
    out = []
    for r in rows[:limit]:
        if r["theirs"] == 0:
            out.append(f"{counter}: 0 for {r['type']} at {r['module']} (ours {r['ours']:,})")
        else:
            sign = "+" if r["difference"] > 0 else "−"
            out.append(f"{counter}: {sign}{abs(r['difference']):,} at {r['module']} ({r['type']})")
    return out


def crosscheck_part(wrapper: PartForward, leaves: tuple, part: str) -> dict:
    mine = ours(wrapper, leaves, part)
    our_incl = hierarchical(mine.per_module)
    strict = mine.macs
    types = {name: type(m).__name__ for name, m in wrapper.named_modules() if name}
    entry: dict = {"ours_strict": strict, "ours_vm": figure(mine.total(), "vm"), "ours_complete": mine.complete,
                   "counters": {}, "explanations": [], "flagged": False}
    for name, run in RUNNERS.items():
        t0 = time.perf_counter()
        try:
            total, per, extra = run(wrapper, leaves)
        except Exception as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            entry["counters"][name] = {"total": None, "error": f"{type(exc).__name__}: "
                                       f"{str(exc).splitlines()[0] if str(exc) else ''} "
                                       f"({frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})"}
            continue
        rows, unattributed = attribute(our_incl, {part: total, **per}, part, types)
        rel = (total - strict) / strict if strict else None
        entry["counters"][name] = {"total": total, "relative_difference": rel, "modules": rows[:10],
                                   "unattributed": unattributed, "seconds": round(time.perf_counter() - t0, 3),
                                   **extra}
        entry["explanations"] += explain(name, rows)
        if unattributed:
            entry["explanations"].append(f"{name}: {unattributed:+,} outside any module")
        if name == "fvcore" and strict and abs(total - strict) / strict > TOLERANCE \
                and abs(unattributed) / strict > TOLERANCE:
            entry["flagged"] = True
    if entry["counters"].get("fvcore", {}).get("total") is None:
        entry["flagged"] = True
        entry["explanations"].append("fvcore could not run: our count is not cross-checked against it")
    return entry


def crosscheck_codec(codec, parts: tuple[str, ...] = ("encoder", "decoder")
                     ) -> tuple[dict | None, dict[str, tuple[str, str]]]:
    """The cross-check entry per part in `parts` (`RateResult.crosscheck`), and what could not be run as
    {key: (code, reason)}."""
    width, height = SIZE
    wanted = parts
    missing: dict[str, tuple[str, str]] = {}
    try:
        parts, how = part_inputs(codec, width, height)
    except Exception as exc:
        missing["crosscheck"] = ("not-available", f"the codec's networks could not run as a forward for the "
                                 f"cross-check ({type(exc).__name__}: {exc}); provide encode_networks/decode_networks")
        return None, missing
    out: dict = {"width": width, "height": height, "forward": how,
                 "note": f"networks only (no entropy coding), one {width}×{height} input per rate point"}
    for part, (wrapper, leaves) in parts.items():
        if part not in wanted:
            continue
        try:
            out[part] = crosscheck_part(wrapper, leaves, part)
        except Exception as exc:
            out[part] = {"error": f"{type(exc).__name__}: {exc}"}
            missing[f"crosscheck_{part}"] = ("failed", f"the {part} forward failed under our counter: {exc}")
    return out, missing
