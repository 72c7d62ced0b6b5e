"""The counting engine: a TorchDispatchMode that prices every executed aten op with `formulas`.

It sees what the real code executes — module calls, functional convs, python loops of an
autoregressive decoder — because it sits below all of them, at the dispatch level. Attribution to
modules is a separate concern: a stack of module names kept by torch's global forward hooks (the same
mechanism FlopCounterMode's ModuleTracker uses; no module or torch function is patched). Ops without
a formula are recorded with their call counts, so a count says whether it is complete.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode

from .formulas import ELEMENT_KINDS, cost_of


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

    @property
    def macs(self) -> int:
        """Strict multiply-accumulates."""
        return sum(c.macs for c in self.per_module.values())

    @property
    def complete(self) -> bool:
        return not self.uncounted

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
        return res

    def to_dict(self) -> dict:
        return {
            "macs": self.macs,
            "complete": self.complete,
            "per_module": {k: v.to_dict() for k, v in sorted(self.per_module.items())},
            "ops": dict(sorted(self.ops.items())),
            "uncounted": dict(sorted(self.uncounted.items())),
            "uncounted_at": dict(sorted(self.uncounted_at.items())),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "CountResult":
        return cls({k: ScopeCost.from_dict(v) for k, v in d["per_module"].items()},
                   dict(d["ops"]), dict(d["uncounted"]), dict(d.get("uncounted_at", {})))


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


class OpCounter(TorchDispatchMode):
    """Counts every aten op executed inside the `with` block.

    `roots` names the modules whose submodules get dotted names (e.g. {"decoder": codec.decoder} gives
    `decoder.g_s.3`). Ops that run outside any module are attributed to `root_name`.
    """

    def __init__(self, roots: dict[str, torch.nn.Module] | None = None, root_name: str = "call"):
        super().__init__()
        self.root_name = root_name
        self._names: dict[int, str] = {}
        self._keep: list[torch.nn.Module] = []   # keeps ids valid while counting
        for prefix, mod in (roots or {}).items():
            for name, sub in mod.named_modules(prefix=prefix, remove_duplicate=False):
                if id(sub) not in self._names:
                    self._names[id(sub)] = name
                    self._keep.append(sub)
        self._stack: list[str] = []
        self._per_module: dict[str, ScopeCost] = defaultdict(ScopeCost)
        self._ops: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self._uncounted: Counter = Counter()
        self._uncounted_at: dict[str, list[str]] = defaultdict(list)
        self._handles: list[Any] = []

    # -- module attribution --------------------------------------------------------------------
    def _scope(self) -> str:
        return self._stack[-1] if self._stack else self.root_name

    def _pre(self, module, args) -> None:
        name = self._names.get(id(module))
        if name is None:
            name = f"{self._scope()}.<{type(module).__name__}>"
            self._names[id(module)] = name
            self._keep.append(module)
        self._stack.append(name)

    def _post(self, module, args, output) -> None:
        if self._stack:
            self._stack.pop()

    def __enter__(self):
        # always_call: the scope is popped even when a module's forward raises, so a caught exception
        # inside the submission cannot shift the attribution of everything after it.
        self._handles = [register_module_forward_pre_hook(self._pre),
                         register_module_forward_hook(self._post, always_call=True)]
        return super().__enter__()

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []
        return super().__exit__(*exc)

    # -- counting -------------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        cost = cost_of(func, args, kwargs, out)
        op = str(func._overloadpacket).replace("aten.", "aten::", 1)
        if cost is None:
            self._uncounted[op] += 1
            where = self._uncounted_at[op]
            if len(where) < 5 and self._scope() not in where:
                where.append(self._scope())
            return out
        scope = self._per_module[self._scope()]
        scope.macs += cost.macs
        scope.vm_macs += cost.vm()
        scope.bias += cost.bias
        if cost.elements:
            scope.elements[cost.element_kind] = scope.elements.get(cost.element_kind, 0) + cost.elements
        rec = self._ops[op]
        rec[0] += 1
        rec[1] += cost.macs
        return out

    def result(self) -> CountResult:
        return CountResult(
            per_module={k: v for k, v in self._per_module.items()},
            ops={k: {"calls": v[0], "macs": v[1]} for k, v in self._ops.items()},
            uncounted=dict(self._uncounted),
            uncounted_at={k: list(v) for k, v in self._uncounted_at.items()},
        )


def count_call(fn: Callable[..., Any], *args: Any, roots: dict[str, torch.nn.Module] | None = None,
               root_name: str = "call", **kwargs: Any) -> tuple[Any, CountResult]:
    """Run `fn(*args, **kwargs)` under an OpCounter; return its output and what it executed."""
    counter = OpCounter(roots, root_name)
    with counter:
        out = fn(*args, **kwargs)
    return out, counter.result()


assert set(ELEMENT_KINDS)  # the kinds a ScopeCost's `elements` may hold
