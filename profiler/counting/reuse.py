"""No count made twice across rate points: which earlier rate point ran the same networks.

A rate point's worker returns, per part, a fingerprint of the networks it ran (`network_fingerprint`:
the module tree — names, classes, `extra_repr()` such as strides and paddings —, every parameter's and
buffer's name, shape and dtype, and the source code of every module class and of the codec's class;
not the weights' values). The runner passes the finished rate points' fingerprints, the signatures of
their real counts on every test picture (`count_signature`: MACs per module and per op, nothing timed),
their resolution entries and their cross-check to the workers it starts later (`earlier_entries`); a
later worker takes a part's resolution counts and cross-check from the first earlier rate point whose
fingerprint for that part is its own *and* whose real counts of that part on every test picture are
identical to its own (`find_shared`). The entry it takes names the rate point it was measured on.

The data flow stays one way: runner → worker job → worker result → runner.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from typing import Any, Iterable

import torch

from ..model.report import PartCount

_SOURCE_CACHE: dict[type, str] = {}


def _class_source(cls: type) -> str:
    got = _SOURCE_CACHE.get(cls)
    if got is None:
        try:
            got = inspect.getsource(cls)
        except (OSError, TypeError):
            # no source (a C++ class, a class made at run time): its name and its methods' byte code
            code = [f"{cls.__module__}.{cls.__qualname__}"]
            for name, fn in sorted(vars(cls).items()):
                co = getattr(fn, "__code__", None)
                if co is not None:
                    code.append(f"{name}:{co.co_code.hex()}:{co.co_consts!r}")
            got = "\n".join(code)
        _SOURCE_CACHE[cls] = got
    return got


def network_fingerprint(module: torch.nn.Module, codec: Any = None) -> str:
    """sha256 of what decides the part's counts but the input: module tree, tensors' names, shapes and
    dtypes, module classes' and the codec class's source."""
    h = hashlib.sha256()
    classes: list[type] = []
    for name, mod in module.named_modules(remove_duplicate=False):
        try:
            extra = mod.extra_repr()
        except Exception:
            extra = "?"
        h.update(f"M {name} {type(mod).__module__}.{type(mod).__qualname__} {extra}\n".encode())
        if type(mod) not in classes:
            classes.append(type(mod))
    for kind, items in (("P", module.named_parameters(remove_duplicate=False)),
                        ("B", module.named_buffers(remove_duplicate=False))):
        for name, t in items:
            h.update(f"{kind} {name} {tuple(t.shape)} {t.dtype}\n".encode())
    if codec is not None:
        classes.append(type(codec))
    for cls in classes:
        for base in cls.__mro__:
            if base.__module__.startswith(("torch", "builtins")):
                continue
            h.update(_class_source(base).encode())
    return h.hexdigest()


_TIMED = ("wall_s", "ops_s", "outside_ops_share")


def count_signature(count: dict) -> str:
    """sha256 of a part's count (a PartCount as a dict) without what is timed: equal signatures, equal
    counts per module and op."""
    full = PartCount.model_validate(count).model_dump(mode="json")
    kept = {k: v for k, v in full.items() if k not in _TIMED}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def picture_signatures(pictures: list[dict], part: str) -> dict[str, str]:
    """{picture name: signature of its real count of `part`}."""
    return {p["name"]: count_signature(p["counts"][part]) for p in pictures}


def earlier_entries(results: Iterable[Any]) -> list[dict]:
    """What later workers need of the finished rate points (`RateResult`s): the ones that are ok and
    carry fingerprints, with their own (not themselves shared) resolution counts and cross-check."""
    out = []
    for r in results:
        if not r.ok or not r.networks:
            continue
        sigs = {part: picture_signatures([img.model_dump(mode="json") for img in r.images], part)
                for part in ("encoder", "decoder")}
        out.append({"index": r.index, "target_bpp": r.target_bpp, "networks": dict(r.networks),
                    "signatures": sigs,
                    "resolutions": [e.model_dump(mode="json") for e in r.resolutions],
                    "crosscheck": r.crosscheck.model_dump(mode="json") if r.crosscheck else None})
    return out


def find_shared(earlier: list[dict], part: str, fingerprint: str, signatures: dict[str, str]) -> dict | None:
    """The first earlier rate point that ran this part's networks (same fingerprint) with the same real
    counts on every test picture (same pictures, same signatures); None if there is none."""
    if not signatures:
        return None
    for e in earlier:
        if e["networks"].get(part) == fingerprint and e["signatures"].get(part) == signatures:
            return e
    return None


def shared_crosscheck(src: dict, part: str) -> dict | None:
    """The earlier rate point's cross-check of `part`, naming the rate point it was measured on (a
    part that was itself shared keeps its own), or None if it has none."""
    got = (src.get("crosscheck") or {}).get(part)
    if not got or got.get("error"):
        return None
    return {**got, "measured_on": got.get("measured_on") or measured_on(src)}


def measured_on(source: dict) -> dict:
    return {"index": source["index"], "target_bpp": source["target_bpp"]}
