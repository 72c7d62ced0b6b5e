"""Timing slots (profiler/slots.py): timed phases pinned to their slot's physical cores, alone there; rate
points overlapping (`jobs`) only in their untimed work; results identical to the serial run."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from conftest import CODECS
from profiler.conditions import CountingSpec, ImageSpec, TestConditions, TimingSpec
from profiler.slots import LocalSlotPool, Neighbours, physical_cores


def _sysfs(tmp_path: Path, topology: dict[int, tuple[int, int]]) -> Path:
    """A fake /sys/devices/system/cpu: cpu → (package, core id)."""
    for cpu, (package, core) in topology.items():
        top = tmp_path / f"cpu{cpu}" / "topology"
        top.mkdir(parents=True)
        (top / "physical_package_id").write_text(f"{package}\n")
        (top / "core_id").write_text(f"{core}\n")
    return tmp_path


def test_physical_cores_group_hyperthread_siblings(tmp_path):
    # 4 logical CPUs on 2 physical cores, siblings numbered as Linux does on most x86 machines (0/2, 1/3).
    sysfs = _sysfs(tmp_path, {0: (0, 0), 1: (0, 1), 2: (0, 0), 3: (0, 1)})
    assert physical_cores((0, 1, 2, 3), sysfs) == [(0, 2), (1, 3)]
    # Unreadable topology: every CPU its own core.
    assert physical_cores((5, 7), tmp_path / "none") == [(5,), (7,)]


def test_a_slot_keeps_its_cores_siblings_free_and_the_rest_is_for_untimed_work(tmp_path):
    sysfs = _sysfs(tmp_path, {0: (0, 0), 1: (0, 1), 2: (0, 0), 3: (0, 1)})
    pool = LocalSlotPool(1, 1, cpus=(0, 1, 2, 3), sysfs=sysfs)
    assert [s.cores for s in pool.slots] == [(1,)]          # the highest physical core, one logical CPU of it
    assert pool.untimed_cores == (0, 2) and pool.can_overlap  # its sibling 3 is neither timed nor untimed
    # Two slots take both physical cores: nothing is left beside them, so nothing may overlap them.
    two = LocalSlotPool(2, 1, cpus=(0, 1, 2, 3), sysfs=sysfs)
    assert [s.cores for s in two.slots] == [(0,), (1,)] and not two.can_overlap and two.untimed_cores == (0, 1, 2, 3)
    # A slot of two threads is two physical cores.
    assert [s.cores for s in LocalSlotPool(1, 2, cpus=(0, 1, 2, 3), sysfs=sysfs).slots] == [(0, 1)]
    with pytest.raises(ValueError, match="3 physical cores"):
        LocalSlotPool(3, 1, cpus=(0, 1, 2, 3), sysfs=sysfs)


def test_slots_on_every_core_are_held_for_a_workers_whole_life(tmp_path):
    from profiler.runner import overlapping_jobs
    from profiler.slots import WholeLifeSlot

    sysfs = _sysfs(tmp_path, {0: (0, 0), 1: (0, 1), 2: (0, 0), 3: (0, 1)})
    two = LocalSlotPool(2, 1, cpus=(0, 1, 2, 3), sysfs=sysfs)
    one = LocalSlotPool(1, 1, cpus=(0, 1, 2, 3), sysfs=sysfs)
    single = LocalSlotPool(1, 1, cpus=(0,), sysfs=sysfs)
    assert two.whole_life and not one.whole_life and not single.whole_life
    # Where the slots take every core, one rate point per slot; with a core beside them, as asked; else one.
    assert [overlapping_jobs(p, 4) for p in (two, one, single)] == [2, 4, 1]
    own = WholeLifeSlot(two.slots[1], two.neighbours)
    assert own.acquire() is two.slots[1] and own.untimed_cores == two.slots[1].cores == (1,)
    assert overlapping_jobs(own, 4) == 1


def test_an_idle_slots_cores_are_lent_to_untimed_work_and_taken_back_before_its_timed_phase():
    """A worker's process group (here: a process and its child, with a second thread) runs on the untimed
    cores and the free slot's; granting the slot narrows every one of its threads to the untimed cores
    before acquire() returns; releasing it widens them again."""
    import os
    import signal
    import subprocess
    import sys

    pool = LocalSlotPool(1, 1)
    if not pool.can_overlap:
        pytest.skip("one core: no slot beside the untimed cores")
    code = ("import subprocess, sys, threading, time; threading.Thread(target=time.sleep, args=(60,), daemon=True)"
            ".start(); subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); print('up', flush=True);"
            " time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE, text=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, set(pool.untimed_cores)))
    try:
        assert proc.stdout.readline().strip() == "up"
        time.sleep(0.2)

        def affinities() -> list[set[int]]:
            got = []
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        if os.getpgid(int(pid)) != proc.pid:
                            continue
                        got += [os.sched_getaffinity(int(t)) for t in os.listdir(f"/proc/{pid}/task")]
                    except OSError:
                        pass
            return got

        untimed, everything = set(pool.untimed_cores), set(pool.untimed_cores) | set(pool.slots[0].cores)
        assert len(affinities()) >= 3 and all(a == untimed for a in affinities())
        pool.admit(proc.pid)
        assert all(a == everything for a in affinities())
        slot = pool.acquire()
        assert all(a == untimed for a in affinities())
        pool.release(slot)
        assert all(a == everything for a in affinities())
        pool.leave(proc.pid)
        slot = pool.acquire()                  # no longer a tenant: left as it was
        assert all(a == everything for a in affinities())
        pool.release(slot)
        # Without lending (timing.lend_idle_slots = false) nothing is widened.
        from profiler.conditions import TimingSpec
        from profiler.runner import default_pool

        quiet = default_pool(TestConditions(timing=TimingSpec(lend_idle_slots=False)))
        quiet.admit(proc.pid)
        assert not quiet.lend_idle and quiet.lendable() == tuple(sorted(untimed))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_lending_never_moves_a_worker_that_holds_a_slot(tmp_path, monkeypatch):
    """Two slots and a core beside them: granting the second slot re-pins the other tenants, never the
    worker in its timed phase on the first (it is `holding` from before it is told to start)."""
    import profiler.slots as slots_mod

    sysfs = _sysfs(tmp_path, {0: (0, 0), 1: (0, 1), 2: (0, 2)})
    pool = LocalSlotPool(2, 1, cpus=(0, 1, 2), sysfs=sysfs)
    assert [s.cores for s in pool.slots] == [(1,), (2,)] and pool.untimed_cores == (0,) and pool.lend_idle
    pins: list[tuple[int, tuple[int, ...]]] = []
    monkeypatch.setattr(slots_mod, "pin_group", lambda group, cores: pins.append((group, tuple(cores))))
    a, b, c = 101, 202, 303
    for g in (a, b, c):
        pool.admit(g)
    assert pins == [(g, (0, 1, 2)) for g in (a, b, c)]       # both slots free: every core
    pins.clear()
    first = pool.acquire()                                    # for a: everyone off slot 1
    assert sorted(pins) == [(a, (0, 2)), (b, (0, 2)), (c, (0, 2))]
    pool.holding(a, True)
    pins.clear()
    second = pool.acquire()                                   # for b: a, in its timed phase, is left alone
    assert sorted(pins) == [(b, (0,)), (c, (0,))]
    pool.holding(b, True)
    pins.clear()
    pool.holding(b, False)
    pool.release(second)                                      # b's cores back to what is free; a still alone
    assert sorted(pins) == [(b, (0, 2)), (c, (0, 2))]
    pins.clear()
    pool.holding(a, False)
    pool.release(first)
    assert sorted(pins) == [(a, (0, 1, 2)), (b, (0, 1, 2)), (c, (0, 1, 2))]
    pool.leave(c)
    pins.clear()
    pool.release(pool.acquire())
    assert {g for g, _ in pins} == {a, b}


def test_the_runners_broker_marks_its_worker_holding_before_the_reply(tmp_path, monkeypatch):
    import os

    import profiler.slots as slots_mod
    from profiler.runner import _SlotBroker

    sysfs = _sysfs(tmp_path, {0: (0, 0), 1: (0, 1), 2: (0, 2)})
    pool = LocalSlotPool(2, 1, cpus=(0, 1, 2), sysfs=sysfs)
    monkeypatch.setattr(slots_mod, "pin_group", lambda group, cores: None)
    r, w = os.pipe()
    marked_at_reply = []
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: (marked_at_reply.append(77 in pool._holding), real_write(fd, data))[1])
    broker = _SlotBroker(pool, w, lambda phase: None)
    broker.group = 77
    pool.admit(77)
    broker.request("cpu")
    with os.fdopen(r) as replies:
        assert json.loads(replies.readline())["cores"] == [1]
        assert marked_at_reply == [True]
        broker.release()
        assert 77 not in pool._holding
    os.close(w)


def test_acquire_blocks_until_the_slot_is_released(tmp_path):
    sysfs = _sysfs(tmp_path, {0: (0, 0), 1: (0, 1)})
    pool = LocalSlotPool(1, 1, cpus=(0, 1), sysfs=sysfs)
    first = pool.acquire()
    got = threading.Event()
    threading.Thread(target=lambda: (pool.acquire(), got.set()), daemon=True).start()
    assert not got.wait(0.3)                 # the one slot is held
    pool.release(first)
    assert got.wait(5)


def test_neighbours_are_the_workers_alive_during_a_span():
    nb = Neighbours()
    a = nb.start(0.5)
    b = nb.start(1.0)
    t0 = time.monotonic()
    nb.end(b)
    t1 = time.monotonic()
    c = nb.start(2.0)
    assert nb.during(t0, t1, exclude=a) == [1.0]       # c started after the span
    assert sorted(nb.during(t0, time.monotonic() + 1, exclude=b)) == [0.5, 2.0]
    nb.end(a), nb.end(c)


def _conditions() -> TestConditions:
    return TestConditions(images=ImageSpec(builtin=("chelsea",)), counting=CountingSpec(resolutions=((64, 48),)),
                          timing=TimingSpec(repeats=3, warmup=1, devices=("cpu",), threads=1))


def _calls(log: Path) -> dict[int, list[dict]]:
    by_pid: dict[int, list[dict]] = {}
    for line in log.read_text().splitlines():
        c = json.loads(line)
        by_pid.setdefault(c["pid"], []).append(c)
    return by_pid


def test_two_rate_points_at_once_time_alone_on_their_slot_and_give_the_serial_results(tmp_path, monkeypatch):
    """The fixture codec writes, from inside its own encode()/decode(), the CPUs it may run on and monotonic
    timestamps. With jobs=2 both workers run at once; the timed phases (counted run, warm-up, timed calls)
    must each be on the slot's core and never overlap; the untimed proxy decode runs on the other core."""
    from profiler import runner
    from profiler.submission import load_submission

    sub = load_submission(CODECS / "threads")
    cond = _conditions()
    pool = LocalSlotPool(1, 1)
    if not pool.can_overlap:
        pytest.skip("one core: rate points do not overlap")
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("JPEGAI_TEST_THREADS_LOG", str(log))
    import os

    before = os.sched_getaffinity(0)
    seen: list[set[int]] = []      # the runner's threads' CPUs while it runs (its progress callback's)
    report = runner.profile(sub, cond, tmp_path / "jobs2", [0, 1], ["cpu"], jobs=2, slots=pool,
                            progress=lambda kind, info: seen.append(os.sched_getaffinity(0)))
    assert all(r.ok for r in report.rates), [r.error for r in report.rates]
    slot_cores = list(pool.slots[0].cores)
    assert seen and all(cpus == set(pool.untimed_cores) for cpus in seen)       # off the slot's core
    assert os.sched_getaffinity(0) == before                                    # and given back after
    spans = []
    for pid, calls in _calls(log).items():
        picture = [c for c in calls if (c["h"], c["w"]) == (300, 451)]
        # counted encode+decode, then 3 timed encodes and 3 timed decodes: the timed phase; then the proxy.
        timed, proxy = picture[:8], picture[8:]
        assert [c["call"] for c in timed] == ["encode", "decode"] + ["encode"] * 3 + ["decode"] * 3
        assert all(c["cpus"] == slot_cores and c["threads"] == 1 for c in timed), timed
        assert [c["call"] for c in proxy] == ["decode"]
        # Untimed work runs on the untimed cores and, lent while no timed phase holds it, the slot's.
        assert set(pool.untimed_cores) <= set(proxy[0]["cpus"]) <= set(pool.untimed_cores) | set(slot_cores)
        spans.append((timed[0]["t0"], timed[-1]["t1"]))
    assert len(spans) == 2
    (a0, a1), (b0, b1) = sorted(spans)
    assert a1 <= b0, f"timed phases overlap: {spans}"
    # Nothing of the suite may run on the slot's core during a timed phase: every call of either worker
    # that could run there (all calls in the fixture's log: the codec's own calls) lies outside the other
    # worker's timed span.
    by_pid = _calls(log)
    timed_of = {pid: [c for c in calls if (c["h"], c["w"]) == (300, 451)][:8] for pid, calls in by_pid.items()}
    for pid, calls in by_pid.items():
        (other,) = [p for p in by_pid if p != pid]
        t0, t1 = timed_of[other][0]["t0"], timed_of[other][-1]["t1"]
        for c in calls:
            if c not in timed_of[pid] and set(slot_cores) & set(c["cpus"]):
                assert c["t1"] <= t0 or c["t0"] >= t1, (c, (t0, t1))
    # The report says which slot, its cores, and that the other rate point's worker ran beside it.
    for r, other in zip(report.rates, reversed(report.rates)):
        (hold,) = [h for h in r.worker.slots if h.phase == "cpu"]
        assert hold.cores == slot_cores and hold.index == 0 and hold.held_s > 0
        assert r.worker.cpus == list(pool.untimed_cores) and r.worker.lent_cores == slot_cores
    assert any(other.target_bpp in (h.beside or []) for r, other in zip(report.rates, reversed(report.rates))
               for h in r.worker.slots)
    # No work twice at once: the two rate points run the same networks with the same real counts, so the
    # one that reached its resolutions second waited for the first and took its counts and cross-check.
    shared = [r for r in report.rates if all(p.measured_on for e in r.resolutions for p in e.parts.values())]
    assert len(shared) == 1, [[p.method for e in r.resolutions for p in e.parts.values()] for r in report.rates]
    (taker,) = shared
    (giver,) = [r for r in report.rates if r is not taker]
    assert {p.measured_on.target_bpp for e in taker.resolutions for p in e.parts.values()} == {giver.target_bpp}
    assert [e.decoder.macs for e in taker.resolutions] == [e.decoder.macs for e in giver.resolutions]
    assert taker.crosscheck.decoder.measured_on.target_bpp == giver.target_bpp
    # Identical to the serial run: counts, parameters, bitstreams, decoded pictures.
    serial = runner.profile(sub, cond, tmp_path / "jobs1", [0, 1], ["cpu"], jobs=1, slots=LocalSlotPool(1, 1))
    for p, s in zip(report.rates, serial.rates):
        assert p.params == s.params
        for pi, si in zip(p.images, s.images):
            for part in ("encoder", "decoder"):
                mine, theirs = pi.counts[part], si.counts[part]
                assert mine.macs == theirs.macs and mine.complete == theirs.complete
                assert {k: v.macs for k, v in mine.per_module.items()} == {k: v.macs for k, v in theirs.per_module.items()}
            assert (pi.bitstream_sha256, pi.decoded_sha256) == (si.bitstream_sha256, si.decoded_sha256)
        assert [e.decoder.macs for e in p.resolutions] == [e.decoder.macs for e in s.resolutions]


def test_two_slots_on_a_two_core_machine_run_two_rate_points_each_on_its_own_core(tmp_path, monkeypatch):
    """slots_per_host = 2 on 2 physical cores: each worker holds its slot from start to end, so every call
    of a rate point (timed phase and the untimed proxy decode) is on its slot's one core, single-threaded,
    and the two rate points are on different cores, side by side; counts as the serial run's."""
    from profiler import runner
    from profiler.submission import load_submission

    try:
        pool = LocalSlotPool(2, 1)
    except ValueError:
        pytest.skip("fewer than two physical cores")
    if not pool.whole_life:
        pytest.skip("more than two physical cores: the slots leave a core for untimed work")
    sub = load_submission(CODECS / "threads")
    cond = _conditions()
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("JPEGAI_TEST_THREADS_LOG", str(log))
    report = runner.profile(sub, cond, tmp_path / "k2", [0, 1], ["cpu"], jobs=2, slots=pool)
    assert all(r.ok for r in report.rates), [r.error for r in report.rates]
    cores = []
    for pid, calls in _calls(log).items():
        (own,) = {tuple(c["cpus"]) for c in calls}
        assert all(c["threads"] == 1 for c in calls)
        cores.append(own)
    assert sorted(cores) == sorted(s.cores for s in pool.slots)
    for r in report.rates:
        (hold,) = [h for h in r.worker.slots if h.phase == "cpu"]
        assert r.worker.cpus == hold.cores and hold.waited_s < 1
    assert any(other.target_bpp in (h.beside or []) for r, other in zip(report.rates, reversed(report.rates))
               for h in r.worker.slots)
    serial = runner.profile(sub, cond, tmp_path / "k1", [0, 1], ["cpu"], jobs=1, slots=LocalSlotPool(1, 1))
    for p, s in zip(report.rates, serial.rates):
        assert [i.counts["decoder"].macs for i in p.images] == [i.counts["decoder"].macs for i in s.images]
        assert [i.bitstream_sha256 for i in p.images] == [i.bitstream_sha256 for i in s.images]


def test_a_failing_untimed_step_after_the_timed_phase_keeps_the_timings(monkeypatch):
    """The metrics run after the timed phase: when they raise, the rate point fails with that error but
    the pictures' counts and timings already measured stay in the result (their quality empty)."""
    from profiler import worker

    def broken(x, y):
        raise RuntimeError("metric exploded")

    monkeypatch.setattr(worker, "image_quality", broken)
    cond = _conditions()
    result = worker.run_job({"submission": str(CODECS / "tiny"), "rate_index": 0, "conditions": cond.to_dict(),
                             "devices": ["cpu"], "seed": 0})
    assert not result.ok and "metric exploded" in result.error.message
    (pic,) = result.images
    assert pic.quality == {}
    assert pic.timing["cpu"]["decode"].n == 3 and pic.counts["decoder"].macs > 0
