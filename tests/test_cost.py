"""What a profile spends beside the timed runs (issue #12): untimed work with every core, timed calls
with `timing.threads`; no work done twice; resolutions of codecs without CountableNetworks."""

from __future__ import annotations

import json

import torch

from conftest import CODECS
from profiler.conditions import CountingSpec, ImageSpec, TestConditions, TimingSpec
from profiler.untimed import more_threads, untimed, untimed_threads


def _conditions(resolutions=(), repeats=2, warmup=2, images=("chelsea",)) -> TestConditions:
    return TestConditions(images=ImageSpec(builtin=images), counting=CountingSpec(resolutions=resolutions),
                          timing=TimingSpec(repeats=repeats, warmup=warmup, devices=("cpu",), threads=1))


def _job(codec: str, cond: TestConditions, rate_index: int = 0, **extra) -> dict:
    return {"submission": str(CODECS / codec), "rate_index": rate_index, "conditions": cond.to_dict(),
            "devices": ["cpu"], "seed": 0, **extra}


# -- threads --------------------------------------------------------------------------------------------

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
    cond = _conditions(resolutions=((64, 48),), repeats=2, warmup=2)
    result = worker.run_job(_job("threads", cond))
    assert result.ok, result.error
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    picture = [(c["call"], c["threads"]) for c in calls if (c["h"], c["w"]) == (300, 451)]
    cores = untimed_threads()
    # Per picture, in order: the counted encode and decode (the first warm-up), the interoperability
    # proxy's decode (untimed: every core), the second warm-up, then 2 timed encodes and 2 timed decodes.
    assert [c for c, _ in picture] == ["encode", "decode", "decode", "encode", "decode"] + ["encode"] * 2 + ["decode"] * 2
    assert picture[2] == ("decode", cores)
    assert all(t == 1 for i, (_, t) in enumerate(picture) if i != 2)
    assert [t for _, t in picture[-4:]] == [1, 1, 1, 1]       # the timed calls
    # What the report says about the untimed steps.
    assert result.untimed["interop proxy"].threads == cores and result.untimed["interop proxy"].calls == 1
    assert result.untimed["quality"].threads == cores
    assert result.untimed["resolutions"].threads == cores and result.untimed["resolutions"].seconds > 0
    assert result.untimed["cross-check"].threads == cores
    assert torch.get_num_threads() == 1
