"""What a profile spends beside the timed runs (issue #12): untimed work with every core, timed calls
with `timing.threads`; no work done twice; resolutions of codecs without CountableNetworks."""

from __future__ import annotations

import json

import torch

from conftest import CODECS
from profiler.conditions import CountingSpec, ImageSpec, TestConditions, TimingSpec
from profiler import untimed as untimed_mod
from profiler.untimed import more_threads, untimed, untimed_threads


def _conditions(resolutions=(), repeats=2, warmup=2, images=("chelsea",)) -> TestConditions:
    return TestConditions(images=ImageSpec(builtin=images), counting=CountingSpec(resolutions=resolutions),
                          timing=TimingSpec(repeats=repeats, warmup=warmup, devices=("cpu",), threads=1))


def _job(codec: str, cond: TestConditions, rate_index: int = 0, **extra) -> dict:
    return {"submission": str(CODECS / codec), "rate_index": rate_index, "conditions": cond.to_dict(),
            "devices": ["cpu"], "seed": 0, **extra}


# -- threads --------------------------------------------------------------------------------------------

def test_untimed_threads_are_the_idle_cores_or_the_number_set(monkeypatch):
    import os

    monkeypatch.setenv("JPEGAI_UNTIMED_THREADS", "3")
    assert untimed_threads() == 3
    monkeypatch.delenv("JPEGAI_UNTIMED_THREADS")
    assert 1 <= untimed_threads() <= len(os.sched_getaffinity(0))
    # No /proc/stat (not Linux): the 1-minute load average, this process counted as one.
    monkeypatch.setattr(untimed_mod, "cpu_sample", lambda: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert untimed_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "getloadavg", lambda: (50.0, 0.0, 0.0))
    assert untimed_threads() == 1


def _sample(at, busy, own):
    return untimed_mod.CpuSample(at=at, busy_s=dict(enumerate(busy)), own_s=own)


def test_idle_cores_are_counted_from_what_other_processes_used_in_the_window():
    """Two cores, a 1 s window: hand-computed from the busy seconds per core and this process's own."""
    idle_cores = untimed_mod.idle_cores
    t0 = _sample(10.0, [100.0, 200.0], 5.0)
    # Another process kept core 1 busy; this one used 0.2 s of core 0: one core is left.
    assert idle_cores(t0, _sample(11.0, [100.2, 201.0], 5.2), [0, 1]) == 1
    # The busy seconds were this process's own (two threads in its previous step): both cores.
    assert idle_cores(t0, _sample(11.0, [101.0, 201.0], 7.0), [0, 1]) == 2
    # Others used 0.25 of a core: still two (a core counts while they use under 30 % of it) …
    assert idle_cores(t0, _sample(11.0, [100.25, 200.0], 5.0), [0, 1]) == 2
    # … 0.35 of a core: one.
    assert idle_cores(t0, _sample(11.0, [100.35, 200.0], 5.0), [0, 1]) == 1
    # Only the cores this process may run on count: core 1's load is a timing slot's, not in `cores`.
    assert idle_cores(t0, _sample(11.0, [100.0, 201.0], 5.0), [0]) == 1
    assert idle_cores(t0, _sample(12.0, [100.0, 200.0], 5.0), [0, 1]) == 2
    # Never fewer than one, never more than the cores: both cores busy with others, a 2 s window.
    assert idle_cores(t0, _sample(12.0, [102.0, 202.0], 5.0), [0, 1]) == 1


def test_the_window_is_the_time_since_the_last_estimate_or_a_fresh_sample(monkeypatch):
    """The estimate diffs against the previous one when it is 0.1–5 s old; otherwise it samples afresh
    (a worker's first untimed step), so a stale window never decides."""
    samples = iter([_sample(0.0, [0.0, 0.0], 0.0),      # first call: no previous one …
                    _sample(0.05, [0.05, 0.05], 0.0),   # … a fresh 50 ms sample: others on both cores
                    _sample(1.05, [0.05, 1.05], 1.0)])  # 1 s later: core 1 was this process's own
    monkeypatch.setattr(untimed_mod, "cpu_sample", lambda: next(samples))
    monkeypatch.setattr(untimed_mod.time, "sleep", lambda s: None)
    monkeypatch.setattr(untimed_mod, "_last_sample", None)
    monkeypatch.setattr(untimed_mod.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.delenv("JPEGAI_UNTIMED_THREADS", raising=False)
    assert untimed_threads() == 1
    assert untimed_threads() == 2


def test_more_threads_restores_the_timed_threads_also_when_the_step_raises():
    torch.set_num_threads(1)
    try:
        with more_threads(1, threads=2) as n:
            assert n == torch.get_num_threads() == 2
            raise ValueError("the step failed")
    except ValueError:
        pass
    assert torch.get_num_threads() == 1
    value, rec = untimed("x", lambda: torch.get_num_threads(), 1, threads=2)
    assert value == 2 and rec["threads"] == 2 and rec["seconds"] >= 0 and torch.get_num_threads() == 1


def test_timed_calls_run_with_timing_threads_and_untimed_work_with_every_core(tmp_path, monkeypatch):
    """The fixture codec writes torch.get_num_threads() from inside each of its own encode()/decode()."""
    from profiler import worker

    log = tmp_path / "threads.jsonl"
    monkeypatch.setenv("JPEGAI_TEST_THREADS_LOG", str(log))
    monkeypatch.setenv("JPEGAI_UNTIMED_THREADS", "2")    # raised whatever the machine's load
    cond = _conditions(resolutions=((64, 48),), repeats=2, warmup=2)
    result = worker.run_job(_job("threads", cond))
    assert result.ok, result.error
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    picture = [(c["call"], c["threads"]) for c in calls if (c["h"], c["w"]) == (300, 451)]
    cores = 2
    # Per picture, in order: the counted encode and decode (the first warm-up), the second warm-up, 2
    # timed encodes and 2 timed decodes (the timed phase), then, after it, the interoperability proxy's
    # decode (untimed: every core).
    assert [c for c, _ in picture] == ["encode", "decode", "encode", "decode"] + ["encode"] * 2 + ["decode"] * 3
    assert picture[-1] == ("decode", cores)
    assert all(t == 1 for _, t in picture[:-1])       # the counted run, the warm-up, the timed calls
    # What the report says about the untimed steps.
    assert result.untimed["interop proxy"].threads == cores and result.untimed["interop proxy"].calls == 1
    assert result.untimed["quality"].threads == cores
    assert result.untimed["resolutions"].threads == cores and result.untimed["resolutions"].seconds > 0
    assert result.untimed["cross-check"].threads == cores
    assert torch.get_num_threads() == 1


# -- no work twice; replay ------------------------------------------------------------------------------

def _tiny_macs(width: int, height: int) -> tuple[int, int]:
    """The tiny codec's MACs by hand (tests/codecs/tiny/codec.py), the picture padded to even size, per
    latent position (H/2 × W/2): encoder conv 3→4 k3 (4·27 = 108) + Linear 4→4 (16) = 124; decoder Linear
    (16) + ConvTranspose 4→3 k4 s2 (4·3·16 = 192) + F.conv2d 3→3 k3 on the 4 pixels of the position
    (4·81 = 324) = 532."""
    hw = (height + height % 2) // 2 * ((width + width % 2) // 2)
    return 124 * hw, 532 * hw


def test_rate_points_with_the_same_networks_share_resolutions_and_cross_check(tmp_path):
    """The tiny codec's two rate points differ only in the value of `gain`: same networks, same real counts.
    The first counts its resolutions (one equal to the test picture's size, one replayed), the second takes
    them from it, saying so."""
    from profiler import runner
    from profiler.submission import load_submission

    sub = load_submission(CODECS / "tiny")
    cond = _conditions(resolutions=((451, 300), (64, 48)), repeats=1, warmup=1)
    events = []
    report = runner.profile(sub, cond, tmp_path, [0, 1], ["cpu"], progress=lambda k, i: events.append((k, i)))
    first, second = report.rates
    # The progress shows each rate point's phases, in order, the resolutions with how they are counted.
    phases = [i["phase"] for k, i in events if k == "phase" and i["rate"] == 0.5]
    assert [p for n, p in enumerate(phases) if n == 0 or phases[n - 1] != p] == \
        ["building", "waiting for a timing slot", "counting", "timing", "quality", "resolutions", "cross-check",
         "interop"]
    details = [i.get("detail") for k, i in events if k == "phase" and i["phase"] == "resolutions" and i["rate"] == 0.5]
    assert details[-1] == "64×48: replay"
    assert first.ok and second.ok, (first.error, second.error)
    assert first.networks == second.networks and set(first.networks) == {"encoder", "decoder"}
    same, small = first.resolutions
    # A resolution that is a test picture's size: that picture's real count, as it is.
    assert same.method == "test picture"
    assert {p: s.method for p, s in same.parts.items()} == {"encoder": "test picture", "decoder": "test picture"}
    assert same.encoder == first.images[0].counts["encoder"] and same.decoder == first.images[0].counts["decoder"]
    assert (same.encoder.macs, same.decoder.macs) == _tiny_macs(451, 300)
    # The other: no encode_networks → replayed, checked against a real call on a probe picture.
    assert small.method == "replay" and all(s.method == "replay" for s in small.parts.values())
    assert "reproduced the real count" in small.parts["decoder"].note
    assert (small.encoder.macs, small.decoder.macs) == _tiny_macs(64, 48)
    # The second rate point: every part shared, naming the rate point it was measured on.
    for mine, theirs in zip(second.resolutions, first.resolutions):
        for part in ("encoder", "decoder"):
            src = mine.parts[part]
            assert src.measured_on is not None and (src.measured_on.index, src.measured_on.target_bpp) == (0, 0.5)
            assert src.method == theirs.parts[part].method
            assert getattr(mine, part) == getattr(theirs, part)
    assert first.crosscheck.decoder.measured_on is None
    assert second.crosscheck.decoder.measured_on.target_bpp == 0.5
    assert second.crosscheck.encoder.ours_strict == first.crosscheck.encoder.ours_strict
    assert second.untimed["resolutions"].seconds < first.untimed["resolutions"].seconds


def test_a_part_is_shared_only_with_the_same_networks_and_the_same_real_counts():
    from profiler.counting.reuse import find_shared

    earlier = [{"index": 0, "target_bpp": 0.5, "networks": {"decoder": "abc"},
                "signatures": {"decoder": {"chelsea": "s1", "coffee": "s2"}}}]
    assert find_shared(earlier, "decoder", "abc", {"chelsea": "s1", "coffee": "s2"}) is earlier[0]
    assert find_shared(earlier, "decoder", "abc", {"chelsea": "s1", "coffee": "other"}) is None
    assert find_shared(earlier, "decoder", "abc", {"chelsea": "s1"}) is None
    assert find_shared(earlier, "decoder", "xyz", {"chelsea": "s1", "coffee": "s2"}) is None
    assert find_shared(earlier, "encoder", "abc", {"chelsea": "s1", "coffee": "s2"}) is None


def test_fingerprint_follows_shapes_and_code_not_values():
    from profiler.counting.reuse import network_fingerprint

    torch.manual_seed(0)
    a, b = torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(3, 4, 3)
    assert network_fingerprint(a) == network_fingerprint(b)           # other weights, same network
    assert network_fingerprint(a) != network_fingerprint(torch.nn.Conv2d(3, 4, 3, stride=2))
    assert network_fingerprint(a) != network_fingerprint(torch.nn.Conv2d(3, 5, 3))
    assert network_fingerprint(a) != network_fingerprint(torch.nn.Conv2d(3, 4, 3).double())


def test_replay_equals_the_real_count_and_is_refused_when_it_does_not():
    """Recorded on one size, replayed at others: equal to a real counted call there (and to the hand count);
    a recording checked against a picture it does not reproduce is not accepted, with the reason."""
    import importlib.util

    from profiler.counting.meta import count_real_calls
    from profiler.counting.replay import choose_recording, make_recording, replay

    spec = importlib.util.spec_from_file_location("tiny_codec", CODECS / "tiny" / "codec.py")
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    codec = tiny.TinyCodec(4.0, "cpu")
    enc, dec = count_real_calls(codec, 97, 61, record=True)
    rec = {"encoder": make_recording("p", 97, 61, enc), "decoder": make_recording("p", 97, 61, dec)}
    for w, h in ((200, 122), (1920, 1080)):
        real_enc, real_dec = count_real_calls(codec, w, h)
        got_enc, got_dec = replay(rec["encoder"], w, h), replay(rec["decoder"], w, h)
        assert (got_enc.macs, got_dec.macs) == (real_enc.macs, real_dec.macs) == _tiny_macs(w, h)
        assert got_dec.to_dict()["per_module"] == {k: v for k, v in real_dec.to_dict()["per_module"].items()}
    # Accepted against a real count of another size; refused against a count that is not the codec's.
    real_enc, real_dec = count_real_calls(codec, 200, 122)
    ok, note = choose_recording("decoder", [rec["decoder"]], [("other", 200, 122, real_dec.to_dict())])
    assert ok is rec["decoder"] and "reproduced the real count of other (200×122)" in note
    wrong = {**real_dec.to_dict(), "macs": real_dec.macs + 1}
    refused, why = choose_recording("decoder", [rec["decoder"]], [("other", 200, 122, wrong)])
    assert refused is None and "replayed against" in why
    refused, why = choose_recording("decoder", [rec["decoder"]], [("p", 97, 61, dec.to_dict())])
    assert refused is None and "no other picture of a different size" in why


def test_phase_text_and_phase_events_are_checked():
    from profiler.cli.profile import phase_text
    from profiler.runner import _phase_info

    assert phase_text({"phase": "timing", "image": "chelsea", "n": 1, "of": 4}) == "timing chelsea (2/4)"
    assert phase_text({"phase": "resolutions", "detail": "3840×2160: real call", "estimate_s": 519.6}) == \
        "resolutions 3840×2160: real call, about 520 s"
    assert _phase_info({"phase": "mining"}) == {}
    assert _phase_info({"phase": "GPU", "image": 3, "estimate_s": "soon"}) == {"phase": "GPU"}
