"""Timing slots: where the timed phase of a rate point may run, and that nothing else of the suite runs there.

A rate point's worker has a *timed phase* (the counted run, the warm-ups, the timed calls, the memory
peaks, the task pipelines' timed calls; the GPU phase is a second one) and untimed work around it (loading
and building, the quality metrics, the interoperability proxy, the resolutions, the cross-check). Before a
timed phase the worker asks its runner for a slot (profiler/runner.py, over a pipe) and pins every thread
to the slot's cores for as long as it holds it; everything else of the suite runs on `untimed_cores`.
So several rate points can be profiled at once (`--jobs`) while each timed phase is alone on its physical
cores — the same thing as the serial run, in which one worker's untimed work never shares a core with
its own timed calls.

`LocalSlotPool` holds `slots_per_host` slots of one machine; each is `threads` distinct *physical*
cores (hyper-threaded siblings of a slot's cores are kept free too: a sibling's load slows the timed
core). The slots take the highest-numbered cores (core 0 takes most interrupts); what is left is for the
untimed work, or — on a machine with no core to spare — everything, in which case overlapping work
would share the timed core and the runner does not overlap (`can_overlap`). Another pool (a Dask
cluster's, one per host) implements the same protocol.

A slot no timed phase holds is not left idle: with `lend_idle` its cores are *lent* to the untimed work
of the workers on the host (`admit`ted by the runner). Before a slot is granted, every admitted worker's
process group (its threads and the processes it started) is narrowed to the cores no timed phase holds,
the granted slot's excluded — so the timed phase still starts alone on its cores — and when the slot is
released they are widened again. A process the worker starts in a new session of its own is not in its
group and keeps the cores it was started with (those the worker had then).

Where `slots_per_host` > 1 slots take every physical core (2 slots on a 2-core machine) the pool is
`whole_life`: JVET-style, each worker takes a slot before it starts and keeps it to its end, so its
untimed work runs on its own slot's cores (single-threaded where the slot is one core) and never on
another worker's timed core; K rate points run at once, each as the serial run would on its core. What
they still share (memory bandwidth, the last-level cache) is what `benchmarks/profile_cost.py --slots`
measures against the serial medians.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Slot:
    """One timing slot: the host, its number there, and the logical CPUs its timed phase is pinned to
    (one per physical core)."""
    host: str
    index: int
    cores: tuple[int, ...]


class SlotPool(Protocol):
    untimed_cores: tuple[int, ...]
    neighbours: "Neighbours | None"     # None: the pool cannot see what else runs on the host

    def acquire(self) -> Slot:
        """Block until a slot is free; it is the caller's until `release`."""

    def release(self, slot: Slot) -> None:
        """Give a slot back."""


def allowed_cpus() -> tuple[int, ...]:
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return tuple(range(os.cpu_count() or 1))


def physical_cores(cpus: tuple[int, ...], sysfs: Path = Path("/sys/devices/system/cpu")) -> list[tuple[int, ...]]:
    """The logical CPUs of `cpus` grouped by the physical core they run on (package, core id from sysfs),
    ordered by their lowest CPU; every CPU its own core where the topology cannot be read."""
    groups: dict[tuple[int, int] | tuple[str, int], list[int]] = {}
    for cpu in cpus:
        top = sysfs / f"cpu{cpu}" / "topology"
        try:
            key: tuple = (int((top / "physical_package_id").read_text()), int((top / "core_id").read_text()))
        except (OSError, ValueError):
            key = ("cpu", cpu)
        groups.setdefault(key, []).append(cpu)
    return sorted((tuple(sorted(g)) for g in groups.values()), key=lambda g: g[0])


class LocalSlotPool:
    """`slots_per_host` timing slots of this machine, each `threads` physical cores (see the module)."""

    def __init__(self, slots_per_host: int = 1, threads: int = 1, cpus: tuple[int, ...] | None = None,
                 sysfs: Path = Path("/sys/devices/system/cpu"), lend_idle: bool = True):
        cpus = allowed_cpus() if cpus is None else tuple(sorted(cpus))
        groups = physical_cores(cpus, sysfs)
        per_slot = max(1, int(threads))
        k = max(1, int(slots_per_host))
        if len(groups) < k * per_slot:
            raise ValueError(f"{k} timing slot(s) of {per_slot} physical core(s) need {k * per_slot} physical cores; "
                             f"this process may run on {len(groups)}")
        taken = groups[len(groups) - k * per_slot:]
        self.host = socket.gethostname()
        self.slots = tuple(Slot(self.host, i, tuple(g[0] for g in taken[i * per_slot:(i + 1) * per_slot]))
                           for i in range(k))
        reserved = {c for g in taken for c in g}
        rest = tuple(c for c in cpus if c not in reserved)
        self.can_overlap = bool(rest)
        self.whole_life = not rest and k > 1
        self.untimed_cores = rest or cpus
        self.lend_idle = bool(lend_idle) and self.can_overlap
        self.neighbours: Neighbours | None = Neighbours()
        self._free = list(self.slots)
        self._cond = threading.Condition()
        self._tenants: set[int] = set()
        self._holding: set[int] = set()     # tenants in a timed phase: pinned to their slot, never moved

    def lendable(self) -> tuple[int, ...]:
        """The cores untimed work may run on now: the untimed cores and, with `lend_idle`, the free slots'."""
        with self._cond:
            return self._lendable()

    def _lendable(self) -> tuple[int, ...]:
        lent = [c for s in self._free for c in s.cores] if self.lend_idle else []
        return tuple(sorted(set(self.untimed_cores) | set(lent)))

    def _apply(self) -> None:
        cores = self._lendable()
        for group in list(self._tenants - self._holding):
            pin_group(group, cores)

    def holding(self, group: int, held: bool) -> None:
        """The worker `group` holds a slot (`held`, said before it is told to start its timed phase) or
        gave it back (said before `release`): while it holds one it is left on its slot's cores."""
        with self._cond:
            (self._holding.add if held else self._holding.discard)(group)

    def admit(self, group: int) -> None:
        """A worker (the process group `group`) now on this host: its untimed work runs on `lendable()`."""
        if not self.lend_idle:
            return
        with self._cond:
            self._tenants.add(group)
            pin_group(group, self._lendable())

    def leave(self, group: int) -> None:
        with self._cond:
            self._tenants.discard(group)
            self._holding.discard(group)

    def acquire(self) -> Slot:
        with self._cond:
            while not self._free:
                self._cond.wait()
            slot = self._free.pop(0)
            if self.lend_idle:     # off the slot's cores before its timed phase is told to start
                self._apply()
            return slot

    def release(self, slot: Slot) -> None:
        with self._cond:
            if slot in self.slots and slot not in self._free:
                self._free.append(slot)
                self._free.sort(key=lambda s: s.index)
                if self.lend_idle:
                    self._apply()
                self._cond.notify()


class WholeLifeSlot:
    """One worker's view of a `whole_life` pool: the slot it took before it started is granted at once
    to each of its timed phases, and its untimed work runs on the same cores (profiler/runner.py)."""

    can_overlap = False
    whole_life = False

    def __init__(self, slot: Slot, neighbours: "Neighbours | None"):
        self.slot = slot
        self.slots = (slot,)
        self.untimed_cores = slot.cores
        self.neighbours = neighbours

    def acquire(self) -> Slot:
        return self.slot

    def release(self, slot: Slot) -> None:
        pass


class Neighbours:
    """Which rate points' workers run on this host, when: for the report's `beside` (what ran beside
    a timed phase)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: dict[int, tuple[float, float, float | None]] = {}
        self._next = 0

    def start(self, label: float) -> int:
        with self._lock:
            self._next += 1
            self._spans[self._next] = (label, time.monotonic(), None)
            return self._next

    def end(self, token: int) -> None:
        with self._lock:
            label, t0, _ = self._spans[token]
            self._spans[token] = (label, t0, time.monotonic())

    def during(self, t0: float, t1: float, exclude: int) -> list[float]:
        """The labels of the workers (other than `exclude`) alive at some moment of [t0, t1]."""
        with self._lock:
            return [label for tok, (label, a, b) in self._spans.items()
                    if tok != exclude and a < t1 and (b is None or b > t0)]


@dataclass
class SlotUse:
    """One timed phase's hold of a slot, as the runner saw it (monotonic clock of the runner)."""
    phase: str
    slot: Slot
    requested: float
    acquired: float
    released: float | None = None

    def record(self, beside: list[float] | None) -> dict:
        """The report's `SlotHold`: which slot, how long it was waited for and held, what ran beside it."""
        end = self.released if self.released is not None else time.monotonic()
        return {"phase": self.phase, "host": self.slot.host, "index": self.slot.index,
                "cores": list(self.slot.cores), "waited_s": round(self.acquired - self.requested, 4),
                "held_s": round(end - self.acquired, 4), "beside": None if beside is None else sorted(beside)}


def pin_process(cores: tuple[int, ...] | list[int]) -> None:
    """Every thread of this process on `cores` (sched_setaffinity of pid 0 moves the calling thread
    only: torch's intra-op pool threads are moved one by one)."""
    cores = set(int(c) for c in cores)
    if not cores:
        return
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cores)
        except (OSError, AttributeError):
            pass


def pin_group(group: int, cores: tuple[int, ...] | list[int], proc: Path = Path("/proc")) -> int:
    """Every thread of every process in the process group `group` on `cores` (a worker and what it started
    in its group); how many threads were pinned. Processes that end meanwhile are passed over."""
    cores = set(int(c) for c in cores)
    pinned = 0
    if not cores:
        return 0
    try:
        entries = [e for e in os.listdir(proc) if e.isdigit()]
    except OSError:
        return 0
    for pid in entries:
        try:
            if os.getpgid(int(pid)) != group:
                continue
            tids = os.listdir(proc / pid / "task")
        except OSError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(int(tid), cores)
                pinned += 1
            except (OSError, ValueError):
                pass
    return pinned
