"""The codec's counts at the extra resolutions of profile.toml, each part by the cheapest honest way.

Per resolution and part (encoder, decoder), the first that applies:

1. **shared**: an earlier rate point ran the same networks with the same real counts on every test
   picture (counting/reuse.py): its entry is taken and names the rate point it was measured on;
2. **test picture**: a test picture has that size: its real, counted encode()/decode();
3. **meta networks**: the codec offers `encode_networks`/`decode_networks` (CountableNetworks): counted on
   the meta device (counting/meta.py; on real tensors if meta fails);
4. **replay**: the ops of a counted real call, replayed on meta at the size (counting/replay.py),
   accepted only once a recording reproduced exactly the real count of another picture of a different
   size (a test picture, or a probe: a real call on a small noise picture when every test picture has
   one size);
5. **real call**: the real encode()/decode() of a noise picture at that size, counted; the entry says
   why the cheaper ways did not apply.

Every entry's `parts` says, per part, which it was; `method` keeps one word for the entry.
Runs under `profiler/untimed.py` in the worker: every core.
"""

from __future__ import annotations

import time
from typing import Any

from ..codec import CountableNetworks
from .engine import CountResult
from .meta import _why, count_networks, count_real_calls, meta_agreement, meta_copy
from .replay import ReplayError, choose_recording, make_recording, replay
from .reuse import find_shared, measured_on

PARTS = ("encoder", "decoder")
# The entry's `method` (the words earlier reports used) for a part's method.
ENTRY_METHOD = {"meta networks": "meta", "networks on real tensors": "real tensors (networks)",
                "real call": "real encode()/decode() of a noise image", "test picture": "test picture",
                "replay": "replay", "not counted": "not counted"}
PART_METHOD = {v: k for k, v in ENTRY_METHOD.items()}


def probe_size(width: int, height: int) -> tuple[int, int]:
    """A small picture size other than the test picture's, with odd dimensions (padded in both)."""
    return width + width // 4 + 1 | 1, height + height // 4 + 3 | 1


def coded_size(counts: dict[str, Any]) -> tuple[int, int] | None:
    """The picture as coded: the larger of the parts' largest 3-channel outputs (CountResults or dicts)."""
    got = []
    for c in counts.values():
        hw = c.largest_rgb_hw if isinstance(c, CountResult) else (c or {}).get("largest_rgb_hw")
        if hw:
            got.append(tuple(hw))
    return max(got, key=lambda hw: hw[0] * hw[1]) if got else None


class _Replays:
    """Per part, the accepted recording (decided once, when a resolution first needs it)."""

    def __init__(self, codec, pictures: list[dict], recordings: dict[str, dict[str, CountResult]]):
        self.codec = codec
        self.pictures = pictures
        self.recordings = recordings
        self.decided: dict[str, tuple[Any, str]] = {}
        self.probe: dict[str, CountResult] | None = None
        self.probe_seconds = 0.0

    def _candidates(self, part: str) -> tuple[list, list, list[str]]:
        cands, reals, why = [], [], []
        for p in self.pictures:
            reals.append((p["name"], p["width"], p["height"], p["counts"][part]))
            rec = self.recordings.get(p["name"])
            if rec is None:
                continue
            try:
                cands.append(make_recording(p["name"], p["width"], p["height"], rec[part], coded_size(rec)))
            except ReplayError as exc:
                why.append(f"{p['name']}: {exc}")
        return cands, reals, why

    def _with_probe(self, part: str, cands: list, reals: list) -> None:
        """Every test picture has one size: a real counted call on a small noise picture to check against."""
        first = self.pictures[0]
        w, h = probe_size(first["width"], first["height"])
        if self.probe is None:
            t0 = time.perf_counter()
            enc, dec = count_real_calls(self.codec, w, h, record=True)
            self.probe = {"encoder": enc, "decoder": dec}
            self.probe_seconds = time.perf_counter() - t0
        name = f"a {w}×{h} noise probe"
        reals.append((name, w, h, self.probe[part].to_dict()))
        try:
            cands.append(make_recording(name, w, h, self.probe[part], coded_size(self.probe)))
        except ReplayError:
            pass

    def accepted(self, part: str):
        if part not in self.decided:
            if not self.pictures:
                self.decided[part] = (None, "no test picture was counted")
                return self.decided[part]
            cands, reals, why = self._candidates(part)
            sizes = {(r[1], r[2]) for r in reals}
            if len(sizes) < 2:
                self._with_probe(part, cands, reals)
            rec, note = choose_recording(part, cands, reals)
            if rec is None and why:
                note = "; ".join(why + [note])
            self.decided[part] = (rec, note)
        return self.decided[part]


def _earlier_part(src: dict, width: int, height: int, part: str) -> tuple[dict, dict] | None:
    """(count, source) of `part` in the earlier rate point's entry at width×height, or None."""
    for e in src.get("resolutions") or []:
        if (e["width"], e["height"]) == (width, height) and e.get(part) is not None:
            prior = (e.get("parts") or {}).get(part) or {}
            method = prior.get("method") or PART_METHOD.get(e["method"], e["method"])
            return e[part], {"method": method, "measured_on": prior.get("measured_on") or measured_on(src),
                             "note": prior.get("note", "")}
    return None


def count_resolutions(codec, resolutions, pictures: list[dict], recordings: dict | None = None,
                      shared: dict[str, dict] | None = None, on_step=None
                      ) -> tuple[list[dict], dict[str, tuple[str, str]]]:
    """One entry per profile.toml resolution (`Resolution` as a dict), and what could not be measured.

    `pictures`: the rate point's test pictures as the worker made them ({name, width, height, counts});
    `recordings`: {picture name: {part: the CountResult of its counted call, with `.recording`}};
    `shared`: {part: the earlier rate point (counting/reuse.py `earlier_entries` item) to take it from}.
    `on_step(width, height, how, estimate_s)`: told before each size is counted (progress), with a rough
    estimate of the seconds a real call there takes (the first picture's counted calls scaled by area).
    """
    entries: list[dict] = []
    missing: dict[str, tuple[str, str]] = {}
    if not resolutions:
        return entries, missing
    shared = shared or {}
    countable = isinstance(codec, CountableNetworks)
    meta_twin = None
    if countable:
        try:
            meta_twin = meta_copy(codec)
        except Exception as exc:
            missing["resolutions_meta"] = ("failed", f"could not move the codec to the meta device: {_why(exc)}")
    replays = _Replays(codec, pictures, recordings or {})
    by_size = {(p["width"], p["height"]): p for p in pictures}
    for width, height in resolutions:
        t0 = time.perf_counter()
        counts: dict[str, dict | None] = {}
        parts: dict[str, dict] = {}
        notes: list[str] = []
        need = []
        for part in PARTS:
            got = _earlier_part(shared[part], width, height, part) if part in shared else None
            if got is not None:
                counts[part], parts[part] = got
                continue
            pic = by_size.get((width, height))
            if pic is not None:
                counts[part] = pic["counts"][part]
                parts[part] = {"method": "test picture",
                               "note": f"the real counted {'encode' if part == 'encoder' else 'decode'}() of "
                                       f"test picture {pic['name']}"}
                continue
            need.append(part)
        if need:
            if on_step is not None:
                on_step(width, height, *_plan(meta_twin, countable, replays, need, pictures, width, height, on_step))
            _count_needed(codec, meta_twin, countable, replays, width, height, tuple(need), counts, parts, notes)
        if replays.probe_seconds:
            notes.append(f"replay checked against a probe: {replays.probe_seconds:.1f} s")
            replays.probe_seconds = 0.0
        methods = {parts[p]["method"] for p in PARTS}
        method = ENTRY_METHOD.get(methods.pop()) if len(methods) == 1 else \
            "; ".join(f"{p}: {parts[p]['method']}" for p in PARTS)
        entry = {"width": width, "height": height, "method": method,
                 "seconds": round(time.perf_counter() - t0, 4), "note": "; ".join(notes),
                 "encoder": counts.get("encoder"), "decoder": counts.get("decoder"), "parts": parts}
        if "decoder" in shared and parts["decoder"].get("measured_on"):
            # the decoder's meta-vs-real check travels with its shared count
            earlier = next((e for e in shared["decoder"].get("resolutions") or []
                            if (e["width"], e["height"]) == (width, height)), {})
            if earlier.get("meta_vs_real"):
                entry["meta_vs_real"] = earlier["meta_vs_real"]
        entries.append(entry)
    first = pictures[0] if pictures else None
    if meta_twin is not None and first is not None and any(
            p.get("method") == "meta networks" and not p.get("measured_on") for e in entries for p in e["parts"].values()):
        check = meta_agreement(codec, meta_twin, first["name"], first["width"], first["height"],
                               first["counts"]["decoder"]["macs"])
        entries = [{**e, "meta_vs_real": check} if e["method"] == "meta" and "meta_vs_real" not in e else e
                   for e in entries]
        if check.get("agree") is False:
            missing["resolutions_meta_check"] = ("disagrees",
                f"decoder networks on meta count {check['meta_macs_decoder']} MACs at {check['image']} but the real "
                f"decode() counts {check['real_macs_decoder']}: the resolution counts may not be the decoder's")
    if not countable:
        missing["resolutions_meta"] = ("not-available", "codec has no encode_networks/decode_networks: resolutions "
                                       "counted by replaying its real calls where that is exact, else by real calls")
    return entries, missing


def _plan(meta_twin, countable: bool, replays: _Replays, need: list[str], pictures: list[dict],
          width: int, height: int, on_step) -> tuple[str, float | None]:
    """(how the needed parts will be counted, a rough estimate of a real call's seconds or None)."""
    if meta_twin is not None or countable:
        return "meta networks", None
    if any(part not in replays.decided for part in need):
        on_step(width, height, "checking a replay of the recorded calls", None)
    real = [part for part in need if replays.accepted(part)[0] is None]
    if not real:
        return "replay", None
    return f"real call ({', '.join(real)}: no replay reproduced another picture's count)", \
        _real_estimate(pictures, width, height, real)


def _real_estimate(pictures: list[dict], width: int, height: int, need) -> float | None:
    if not pictures:
        return None
    p = pictures[0]
    walls = [p["counts"][part].get("wall_s") or 0.0 for part in need]
    return sum(walls) * (width * height) / max(1, p["width"] * p["height"])


def _count_needed(codec, meta_twin, countable: bool, replays: _Replays, width: int, height: int,
                  need: tuple[str, ...], counts: dict, parts: dict, notes: list[str]) -> None:
    """The parts in `need` at width×height: meta networks, else replay, else a real call."""
    if meta_twin is not None:
        try:
            enc, dec = count_networks(meta_twin, width, height, "meta")
            for part, res in (("encoder", enc), ("decoder", dec)):
                if part in need:
                    counts[part], parts[part] = res.to_dict(), {"method": "meta networks"}
            return
        except Exception as exc:
            notes.append(f"meta device failed: {_why(exc)}")
    if countable:
        try:
            enc, dec = count_networks(codec, width, height, "cpu")
            for part, res in (("encoder", enc), ("decoder", dec)):
                if part in need:
                    counts[part], parts[part] = res.to_dict(), {"method": "networks on real tensors"}
            return
        except Exception as exc:
            notes.append(f"networks on real tensors failed: {_why(exc)}")
    real_needed = []
    for part in need:
        rec, why = replays.accepted(part)
        if rec is not None:
            try:
                counts[part] = replay(rec, width, height).to_dict()
                parts[part] = {"method": "replay", "note": why}
                continue
            except ReplayError as exc:
                why = str(exc)
        real_needed.append((part, why))
    if not real_needed:
        return
    wanted = tuple(p for p, _ in real_needed)
    try:
        enc, dec = count_real_calls(codec, width, height, need=wanted)
        for part, why in real_needed:
            res = enc if part == "encoder" else dec
            note = ("codec has no encode_networks/decode_networks; " if not countable else "") + \
                   f"replay not accepted: {why}" if why else ""
            counts[part], parts[part] = res.to_dict(), {"method": "real call", "note": note}
    except Exception as exc:
        notes.append(f"real encode()/decode() failed: {_why(exc)}")
        for part, _ in real_needed:
            counts[part], parts[part] = None, {"method": "not counted", "note": _why(exc)}
