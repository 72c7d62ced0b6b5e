"""The counting engine: a TorchDispatchMode that prices every executed op with a `FormulaRegistry`.

It sees what the real code executes — module calls, functional convs, python loops of an
autoregressive decoder, TorchScript, exported graphs — because it sits below all of them, at the
dispatch level. How it treats an op, in order:

1. a higher-order operator (cond, while_loop, map, flex_attention, …) is run through its eager body
   with the counter active, so the body's ops are counted; one it cannot run that way is run as it is
   and recorded uncounted with the reason — never raised;
2. an op with a formula is run and priced; a formula that raises leaves the op uncounted with the
   reason, and the call goes on (formulas get the output as `out_val`, a name no op uses);
3. an op with no formula that is not zero-cost is *decomposed* (`func.decompose`, as torch's
   FlopCounterMode does) and its parts are counted: under `torch.inference_mode()` composite ops such
   as `conv2d`, `linear` or `batch_norm` reach the mode before autograd has decomposed them;
4. anything left is run and recorded uncounted ("no formula and no decomposition").

Code the dispatch mode cannot see (numpy, a C++ extension, ONNX Runtime, an AOT-compiled library) is
not priced but shows up in time: the result holds the counted call's wall time and the part of it
spent inside aten ops (the counter's own bookkeeping excluded), and a call that counted no MAC while
spending time outside any op says so in `unseen` (it is then not `complete`). `torch.compile`d code
runs eagerly while counted (Dynamo does not compile under a user dispatch mode; the counter sets the
`force_eager` stance so a `fullgraph=True` function runs instead of raising), so its ops are counted.

Attribution to modules is a separate concern: a stack of module names kept by torch's global forward
hooks (the same mechanism FlopCounterMode's ModuleTracker uses; no module or torch function is
patched). A module's name is its call path: the caller's name and the attribute under which the caller
holds it, so a module shared by two parents is split between them (as fvcore does). L2 normalisations
(`F.normalize`) are priced at the torch-function level (a TorchFunctionMode) for the vm convention.
"""

from __future__ import annotations

import time
import weakref
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch._C import DispatchKey
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .formulas import DEFAULT, ELEMENT_KINDS, OUTPUT_KW, Cost, FormulaRegistry, op_name

# A 0-MAC call that spent at least this long, and this share of its time, outside any op is reported,
# not trusted (python between small ops alone stays well under it). The process must also have used at
# least UNSEEN_MIN_S of CPU during the call: wall time alone grows when a loaded machine preempts it.
UNSEEN_MIN_S = 0.010
UNSEEN_MIN_SHARE = 0.5


@dataclass
class ScopeCost:
    """Costs counted while a scope (module) was the innermost one running; children not included."""

    macs: int = 0
    vm_macs: int = 0
    bias: int = 0
    elements: dict = field(default_factory=dict)   # kind → count

    def add(self, other: "ScopeCost") -> None:
        self.macs += other.macs
        self.vm_macs += other.vm_macs
        self.bias += other.bias
        for k, v in other.elements.items():
            self.elements[k] = self.elements.get(k, 0) + v

    def add_cost(self, cost: Cost) -> None:
        self.macs += cost.macs
        self.vm_macs += cost.vm()
        self.bias += cost.bias
        if cost.elements:
            self.elements[cost.element_kind] = self.elements.get(cost.element_kind, 0) + cost.elements

    def to_dict(self) -> dict:
        return {"macs": self.macs, "vm_macs": self.vm_macs, "bias": self.bias, "elements": dict(self.elements)}

    @classmethod
    def from_dict(cls, d: dict) -> "ScopeCost":
        return cls(d["macs"], d["vm_macs"], d["bias"], dict(d["elements"]))


@dataclass
class CountResult:
    """What one counted call executed."""

    per_module: dict[str, ScopeCost] = field(default_factory=dict)   # scope → self cost
    ops: dict[str, dict] = field(default_factory=dict)               # op → {"calls", "macs"}
    uncounted: dict[str, int] = field(default_factory=dict)          # op without a formula → calls
    uncounted_at: dict[str, list] = field(default_factory=dict)      # op without a formula → scopes (first 5)
    uncounted_why: dict[str, str] = field(default_factory=dict)      # op → why it is uncounted (first reason)
    decomposed: dict[str, int] = field(default_factory=dict)         # op counted through its parts → calls
    unseen: list = field(default_factory=list)                       # what the counter could not see, in words
    wall_s: float = 0.0      # the counted call's wall time, the counter's own bookkeeping excluded
    ops_s: float = 0.0       # the part of it spent inside aten (or other dispatched) ops
    # (H, W) of the largest 3-channel 4-D tensor an op produced: the picture as the codec codes it, padding
    # included (a 451×300 picture coded at 512×320). What share of a kMAC/px figure is padding is derived from it.
    largest_rgb_hw: tuple[int, int] | None = None
    # With `OpCounter(record=True)`: the call's ops grouped by op, scope and shapes (counting/replay.py);
    # never serialised.
    recording: Any = field(default=None, repr=False, compare=False)

    @property
    def macs(self) -> int:
        """Strict multiply-accumulates."""
        return sum(c.macs for c in self.per_module.values())

    @property
    def complete(self) -> bool:
        return not self.uncounted and not self.unseen

    @property
    def outside_ops_share(self) -> float | None:
        """Share of the call's wall time spent outside any dispatched op: python, and whatever the
        counter cannot see (numpy, C++ extensions, ONNX Runtime, entropy coders). None if not timed."""
        if self.wall_s <= 0:
            return None
        return min(1.0, max(0.0, 1.0 - self.ops_s / self.wall_s))

    def total(self) -> ScopeCost:
        out = ScopeCost()
        for c in self.per_module.values():
            out.add(c)
        return out

    def merged(self, other: "CountResult") -> "CountResult":
        res = CountResult()
        for src in (self, other):
            for k, c in src.per_module.items():
                res.per_module.setdefault(k, ScopeCost()).add(c)
            for k, o in src.ops.items():
                d = res.ops.setdefault(k, {"calls": 0, "macs": 0})
                d["calls"] += o["calls"]
                d["macs"] += o["macs"]
            for k, n in src.uncounted.items():
                res.uncounted[k] = res.uncounted.get(k, 0) + n
            for k, where in src.uncounted_at.items():
                seen = res.uncounted_at.setdefault(k, [])
                seen.extend(w for w in where if w not in seen and len(seen) < 5)
            for k, why in src.uncounted_why.items():
                res.uncounted_why.setdefault(k, why)
            for k, n in src.decomposed.items():
                res.decomposed[k] = res.decomposed.get(k, 0) + n
            res.unseen.extend(u for u in src.unseen if u not in res.unseen)
            res.wall_s += src.wall_s
            res.ops_s += src.ops_s
        return res

    def to_dict(self) -> dict:
        return {
            "macs": self.macs,
            "complete": self.complete,
            "per_module": {k: v.to_dict() for k, v in sorted(self.per_module.items())},
            "ops": dict(sorted(self.ops.items())),
            "uncounted": dict(sorted(self.uncounted.items())),
            "uncounted_at": dict(sorted(self.uncounted_at.items())),
            "uncounted_why": dict(sorted(self.uncounted_why.items())),
            "decomposed": dict(sorted(self.decomposed.items())),
            "unseen": list(self.unseen),
            "wall_s": self.wall_s,
            "ops_s": self.ops_s,
            "outside_ops_share": self.outside_ops_share,
            "largest_rgb_hw": list(self.largest_rgb_hw) if self.largest_rgb_hw else None,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "CountResult":
        # keys added after the first reports were written are optional
        return cls({k: ScopeCost.from_dict(v) for k, v in d["per_module"].items()},
                   dict(d["ops"]), dict(d["uncounted"]), dict(d.get("uncounted_at", {})),
                   dict(d.get("uncounted_why", {})), dict(d.get("decomposed", {})), list(d.get("unseen", [])),
                   float(d.get("wall_s", 0.0)), float(d.get("ops_s", 0.0)),
                   tuple(d["largest_rgb_hw"]) if d.get("largest_rgb_hw") else None)


def hierarchical(per_module: dict[str, ScopeCost], figure: Callable[[ScopeCost], int] | None = None
                 ) -> dict[str, int]:
    """MACs of every scope including its children (`decoder.g_s` includes `decoder.g_s.3`); strict MACs
    unless `figure` (a convention) says otherwise."""
    figure = figure or (lambda c: c.macs)
    out: dict[str, int] = defaultdict(int)
    for name, cost in per_module.items():
        parts = name.split(".")
        n = figure(cost)
        for i in range(1, len(parts) + 1):
            out[".".join(parts[:i])] += n
    return dict(out)


def top_modules(per_module: dict[str, ScopeCost], n: int = 8) -> list[tuple[str, int]]:
    """The `n` leaf-most scopes with the most strict MACs (self cost: a parent is not listed again for
    what its children did), largest first."""
    ranked = sorted(((k, c.macs) for k, c in per_module.items() if c.macs), key=lambda kv: (-kv[1], kv[0]))
    return ranked[:n]


def _why(exc: BaseException) -> str:
    msg = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {msg}"[:300]


class _FunctionWatch(TorchFunctionMode):
    """Prices the few torch *functions* that have a formula (F.normalize); everything else passes."""

    def __init__(self, counter: "OpCounter"):
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func, types, args=(), kwargs=None):
        # this mode's own time (all but `func` itself) is the counter's, not the codec's: it is excluded
        # from the call's wall time like the dispatch mode's book-keeping
        t0 = time.perf_counter()
        kwargs = kwargs or {}
        fn = self.counter.registry.function_formula(func)
        t1 = time.perf_counter()
        try:
            out = func(*args, **kwargs)
        finally:
            t2 = time.perf_counter()
            self.counter._t_overhead += t1 - t0
        if fn is not None:
            name = f"{getattr(func, '__module__', 'torch')}.{getattr(func, '__name__', func)}"
            try:
                cost = fn(*args, **kwargs, **{OUTPUT_KW: out})
            except Exception as exc:   # a formula never breaks the codec's call
                self.counter._uncounted_op(name, f"formula raised {_why(exc)}")
            else:
                self.counter._priced(name, cost)
                if self.counter._record is not None:
                    self.counter._unreplayable.append(f"{name} at {self.counter._scope()} (priced as a torch function)")
        self.counter._t_overhead += time.perf_counter() - t2
        return out


class OpCounter(TorchDispatchMode):
    """Counts every op executed inside the `with` block.

    `roots` names the modules whose submodules get dotted names (e.g. {"decoder": codec.decoder} gives
    `decoder.g_s.3`). Ops that run outside any module are attributed to `root_name`. `registry`: the
    formulas (default: `formulas.DEFAULT`; a counter's own via `DEFAULT.with_mapping({...})`).
    """

    supports_higher_order_operators = True   # HOPs reach __torch_dispatch__ instead of raising

    def __init__(self, roots: dict[str, torch.nn.Module] | None = None, root_name: str = "call",
                 registry: FormulaRegistry | None = None, record: bool = False):
        super().__init__()
        # record=True: every priced, zero-cost, uncounted and decomposed op grouped by (kind, op, scope,
        # shapes[, other arguments]) with its number of calls, for counting/replay.py; the bookkeeping
        # is inside the dispatch, so outside the call's reported wall time.
        self._record: dict | None = {} if record else None
        self._unreplayable: list[str] = []
        # Tensors whose shape cannot depend on the input: the roots' parameters and buffers and what ops
        # make from them alone (a masked weight). Recorded as such: a replay keeps their shapes.
        self._constant: dict[int, weakref.ref] | None = None
        if record:
            self._constant = {}
            for mod in (roots or {}).values():
                for t in list(mod.parameters()) + list(mod.buffers()):
                    self._add_constant(t)
        self.root_name = root_name
        self.registry = registry if registry is not None else DEFAULT
        self._names: dict[int, str] = {}
        self._keep: list[torch.nn.Module] = []   # keeps ids valid while counting
        self._root_ids = {id(mod): prefix for prefix, mod in (roots or {}).items()}
        for prefix, mod in (roots or {}).items():
            for name, sub in mod.named_modules(prefix=prefix, remove_duplicate=False):
                if id(sub) not in self._names:
                    self._names[id(sub)] = name
                    self._keep.append(sub)
        self._children: dict[int, dict[int, str]] = {}   # parent id → child id → attribute name
        self._stack: list[tuple[torch.nn.Module, str]] = []
        self._per_module: dict[str, ScopeCost] = defaultdict(ScopeCost)
        self._ops: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self._uncounted: Counter = Counter()
        self._uncounted_at: dict[str, list[str]] = defaultdict(list)
        self._uncounted_why: dict[str, str] = {}
        self._decomposed: Counter = Counter()
        self._largest_rgb: tuple[int, int] | None = None
        self._handles: list[Any] = []
        self._contexts: list[Any] = []
        self._entered = 0          # `with self` nesting (re-entered while dispatching)
        self._in_dispatch = False
        self._depth = 0            # nesting of dispatch calls being timed
        self._t_dispatch = 0.0     # time inside outermost __torch_dispatch__ calls
        self._t_ops = 0.0          # time inside the ops those calls ran
        self._t_overhead = 0.0     # the torch-function watch's own time
        self._t_start = 0.0
        self._t_end = 0.0
        self._cpu_start = 0.0      # process CPU time (all threads) at entry and exit
        self._cpu_end = 0.0

    # -- module attribution --------------------------------------------------------------------
    def _scope(self) -> str:
        return self._stack[-1][1] if self._stack else self.root_name

    def _child_name(self, parent: torch.nn.Module, child: torch.nn.Module) -> str | None:
        table = self._children.get(id(parent))
        if table is None:
            table = {}
            for attr, sub in parent._modules.items():
                if sub is not None and id(sub) not in table:
                    table[id(sub)] = attr
            self._children[id(parent)] = table
        return table.get(id(child))

    def _pre(self, module, args) -> None:
        name = self._root_ids.get(id(module))    # a root keeps its own name, whoever calls it
        if name is None and self._stack:
            # call path: the caller's name + the attribute it holds this module under
            parent, parent_name = self._stack[-1]
            attr = self._child_name(parent, module)
            if attr is not None:
                name = f"{parent_name}.{attr}"
        if name is None:
            name = self._names.get(id(module))
        if name is None:
            name = f"{self._scope()}.<{type(module).__name__}>"
            self._names[id(module)] = name
            self._keep.append(module)
        self._stack.append((module, name))

    def _post(self, module, args, output) -> None:
        if self._stack:
            self._stack.pop()

    def __enter__(self):
        self._entered += 1
        if self._entered > 1:
            # re-entered from inside __torch_dispatch__ (a decomposition, a higher-order body): only the
            # mode goes back on the stack
            return super().__enter__()
        # always_call: the scope is popped even when a module's forward raises, so a caught exception
        # inside the submission cannot shift the attribution of everything after it.
        self._handles = [register_module_forward_pre_hook(self._pre),
                         register_module_forward_hook(self._post, always_call=True)]
        self._contexts = []
        stance = getattr(torch.compiler, "set_stance", None)
        if stance is not None:
            # Dynamo does not compile under a user dispatch mode and runs the frames eagerly (counted);
            # force_eager keeps a fullgraph=True function from raising "found no compiled frames".
            self._contexts.append(stance("force_eager"))
        if self.registry.has_functions:
            self._contexts.append(_FunctionWatch(self))
        for c in self._contexts:
            c.__enter__()
        out = super().__enter__()
        self._t_start = time.perf_counter()
        self._cpu_start = time.process_time()
        return out

    def __exit__(self, *exc):
        self._entered -= 1
        if self._entered > 0:
            return super().__exit__(*exc)
        self._t_end = time.perf_counter()
        self._cpu_end = time.process_time()
        try:
            return super().__exit__(*exc)
        finally:
            for c in reversed(self._contexts):
                c.__exit__(None, None, None)
            self._contexts = []
            for h in self._handles:
                h.remove()
            self._handles = []

    # -- recording ------------------------------------------------------------------------------
    def _note(self, kind: str, func, args, kwargs, why: str = "") -> None:
        """One op call into the recording (record=True only)."""
        if self._record is None:
            return
        leaves, spec = tree_flatten((args, kwargs))
        shapes = tuple((tuple(int(d) for d in t.shape), t.dtype, self._is_constant(t))
                       if isinstance(t, torch.Tensor) else None for t in leaves)
        others = None
        if kind == "priced":
            others = []
            for t in leaves:
                if isinstance(t, torch.Tensor):
                    continue
                try:
                    hash(t)
                    others.append(t)
                except TypeError:
                    others.append(repr(t))
            others = tuple(others)
        key = (kind, func, self._scope(), shapes, others, why)
        got = self._record.get(key)
        if got is None:
            self._record[key] = [1, (spec, [None if isinstance(t, torch.Tensor) else t for t in leaves])
                                 if kind == "priced" else None]
        else:
            got[0] += 1

    def _is_constant(self, t: torch.Tensor) -> bool:
        if isinstance(t, torch.nn.Parameter):
            return True
        ref = self._constant.get(id(t)) if self._constant is not None else None
        return ref is not None and ref() is t

    def _add_constant(self, t: torch.Tensor) -> None:
        table = self._constant
        key = id(t)

        def gone(ref, key=key, table=table):
            if table.get(key) is ref:
                del table[key]
        try:
            table[key] = weakref.ref(t, gone)
        except TypeError:
            pass

    def _track_constant(self, args, kwargs, out) -> None:
        """Outputs of an op whose tensor inputs are all constant are constant when they have the shape of
        one of them (a masked weight; not an expand of a parameter to the latent's size). record=True only."""
        if self._constant is None:
            return
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if tensors and all(self._is_constant(t) for t in tensors):
            shapes = {tuple(t.shape) for t in tensors}
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and tuple(t.shape) in shapes:
                    self._add_constant(t)

    def _uncounted_op(self, op: str, why: str) -> None:
        self._uncounted[op] += 1
        self._uncounted_why.setdefault(op, why)
        where = self._uncounted_at[op]
        if len(where) < 5 and self._scope() not in where:
            where.append(self._scope())

    def _priced(self, op: str, cost: Cost) -> None:
        if not isinstance(cost, Cost):
            cost = Cost(macs=int(cost))
        self._per_module[self._scope()].add_cost(cost)
        rec = self._ops[op]
        rec[0] += 1
        rec[1] += cost.macs

    def _run(self, func, args, kwargs):
        """Run the op itself, timed."""
        self._depth += 1
        t0 = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            if self._depth == 1:
                self._t_ops += time.perf_counter() - t0
            self._depth -= 1

    # -- counting -------------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        outer = self._depth == 0 and not self._in_dispatch
        t0 = time.perf_counter() if outer else 0.0
        if outer:
            self._in_dispatch = True
        try:
            return self._dispatch(func, types, args, kwargs or {})
        finally:
            if outer:
                self._in_dispatch = False
                self._t_dispatch += time.perf_counter() - t0

    def _dispatch(self, func, types, args, kwargs):
        if isinstance(func, torch._ops.HigherOrderOperator):
            return self._higher_order(func, args, kwargs)
        name = op_name(func._overloadpacket)
        fn = self.registry.lookup(func)
        if fn is None and not self.registry.is_zero_cost(func):
            # no formula: count its parts if it has a decomposition (what torch's FlopCounterMode does)
            with self:
                r = func.decompose(*args, **kwargs)
            if r is not NotImplemented:
                self._decomposed[name] += 1
                self._note("decomposed", func, args, kwargs)
                return r
        out = self._run(func, args, kwargs)
        self._track_constant(args, kwargs, out)
        if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[1] == 3:
            hw = (int(out.shape[2]), int(out.shape[3]))
            if self._largest_rgb is None or hw[0] * hw[1] > self._largest_rgb[0] * self._largest_rgb[1]:
                self._largest_rgb = hw
        if fn is None:
            if self.registry.is_zero_cost(func):
                self._priced(name, Cost())
                self._note("zero", func, args, kwargs)
            else:
                self._uncounted_op(name, "no formula and no decomposition")
                self._note("uncounted", func, args, kwargs, "no formula and no decomposition")
            return out
        if OUTPUT_KW in kwargs:
            self._uncounted_op(name, f"the op has an argument named {OUTPUT_KW!r}")
            self._note("uncounted", func, args, kwargs, f"the op has an argument named {OUTPUT_KW!r}")
            return out
        try:
            cost = fn(*args, **kwargs, **{OUTPUT_KW: out})
        except Exception as exc:   # a formula never breaks the codec's call
            self._uncounted_op(name, f"formula raised {_why(exc)}")
            self._note("uncounted", func, args, kwargs, f"formula raised {_why(exc)}")
            return out
        self._priced(name, cost)
        self._note("priced", func, args, kwargs)
        return out

    def _higher_order(self, hop, args, kwargs):
        """A higher-order operator: count its body by running its eager implementation with this mode
        active; `cond` runs the branch its predicate takes. Otherwise run it as it is, uncounted."""
        name = f"higher_order::{hop.name()}"
        if self._record is not None:
            self._unreplayable.append(f"{name} at {self._scope()}")
        if hop is torch.ops.higher_order.cond:
            pred, true_fn, false_fn, operands = args
            try:
                taken = bool(pred)
            except Exception as exc:   # a predicate without a value (meta): say so, run it uncounted
                self._uncounted_op(name, f"predicate has no value: {_why(exc)}")
                return self._run(hop, args, kwargs)
            self._decomposed[name] += 1
            with self:
                return (true_fn if taken else false_fn)(*operands)
        body = hop.py_kernels.get(DispatchKey.CompositeExplicitAutograd)
        if body is None:
            self._uncounted_op(name, "higher-order operator without an eager body")
            return self._run(hop, args, kwargs)
        self._decomposed[name] += 1
        with self:
            return body(*args, **kwargs)

    def result(self) -> CountResult:
        overhead = max(0.0, self._t_dispatch - self._t_ops) + self._t_overhead
        wall = max(0.0, (self._t_end or time.perf_counter()) - self._t_start - overhead)
        res = CountResult(
            per_module={k: v for k, v in self._per_module.items()},
            ops={k: {"calls": v[0], "macs": v[1]} for k, v in self._ops.items()},
            uncounted=dict(self._uncounted),
            uncounted_at={k: list(v) for k, v in self._uncounted_at.items()},
            uncounted_why=dict(self._uncounted_why),
            decomposed=dict(self._decomposed),
            wall_s=wall,
            ops_s=min(self._t_ops, wall),
            largest_rgb_hw=self._largest_rgb,
        )
        if self._record is not None:
            res.recording = {"groups": dict(self._record), "unreplayable": list(self._unreplayable),
                             "root": self.root_name}
        outside = res.wall_s - res.ops_s
        cpu_s = (self._cpu_end or time.process_time()) - self._cpu_start
        if (res.macs == 0 and outside >= UNSEEN_MIN_S and cpu_s >= UNSEEN_MIN_S
                and (res.outside_ops_share or 0.0) >= UNSEEN_MIN_SHARE):
            share = res.outside_ops_share or 0.0
            res.unseen.append(
                f"no MAC was counted, yet {outside * 1000:.1f} ms ({share:.0%}) of the call ran outside any "
                "torch op: compute the dispatch mode cannot see (numpy, a C++ extension, ONNX Runtime, "
                "an AOT-compiled library)")
        return res


def count_call(fn: Callable[..., Any], *args: Any, roots: dict[str, torch.nn.Module] | None = None,
               root_name: str = "call", registry: FormulaRegistry | None = None, record: bool = False,
               **kwargs: Any) -> tuple[Any, CountResult]:
    """Run `fn(*args, **kwargs)` under an OpCounter; return its output and what it executed (with
    `record`, its ops grouped for counting/replay.py in `.recording`)."""
    counter = OpCounter(roots, root_name, registry, record)
    with counter:
        out = fn(*args, **kwargs)
    return out, counter.result()


assert set(ELEMENT_KINDS)  # the kinds a ScopeCost's `elements` may hold
