"""Timing: statistics against hand-computed values, and a codec with known sleeps timed in a worker."""

import time

import pytest

from profiler import runner
from profiler.conditions import CountingSpec, ImageSpec, TestConditions, TimingSpec
from profiler.submission import load_submission
from profiler.timing import quartiles, rate_point_stats, summarize, time_cpu

from conftest import CODECS


def conditions(repeats: int, warmup: int) -> TestConditions:
    # One small built-in photograph (chelsea, 451×300), no extra resolutions, CPU only: a fast worker.
    return TestConditions(images=ImageSpec(builtin=("chelsea",)), counting=CountingSpec(resolutions=()),
                          timing=TimingSpec(repeats=repeats, warmup=warmup, devices=("cpu",)))


def test_quartiles_odd_count():
    # sorted 1 2 3 4 10: Q1 at rank 1 → 2, median rank 2 → 3, Q3 rank 3 → 4.
    assert quartiles([10, 2, 4, 1, 3]) == (2, 3, 4)


def test_quartiles_even_count_interpolates():
    # sorted 1 2 3 4: Q1 at rank 0.75 → 1.75, median rank 1.5 → 2.5, Q3 rank 2.25 → 3.25.
    assert quartiles([4.0, 1.0, 3.0, 2.0]) == pytest.approx((1.75, 2.5, 3.25))


def test_summary_of_far_apart_values_is_their_midpoint():
    # 1268.728 + (17864.072 − 1268.728) · 0.5 is 1.8e-12 above (1268.728 + 17864.072) / 2 in binary
    # floating point: the median is the midpoint, exactly, and summarising does not fail on it (a rate
    # point of two pictures whose ms/Mpx were this far apart once failed its worker here).
    s = summarize([17864.072, 1268.728])
    assert s.median_s == (1268.728 + 17864.072) / 2
    assert rate_point_stats([({"median_s": 1.268728, "n": 1}, 1000, 1000),
                             ({"median_s": 17.864072, "n": 1}, 1000, 1000)])["ms_per_mpx"]["median"] == \
        (1268.728 + 17864.072) / 2


def test_summarize_fields():
    s = summarize([0.30, 0.10, 0.20, 0.50])
    assert (s.n, s.min_s, s.max_s) == (4, 0.10, 0.50)
    assert s.median_s == pytest.approx(0.25)
    # sorted .1 .2 .3 .5: Q1 rank .75 → .175, Q3 rank 2.25 → .35; IQR .175; spread (.5−.1)/.25 = 1.6.
    assert (s.q1_s, s.q3_s, s.iqr_s) == pytest.approx((0.175, 0.35, 0.175))
    assert s.spread == pytest.approx(1.6)
    d = s.to_dict(1000, 500)                    # 0.5 megapixel
    assert d["ms_per_mpx"] == pytest.approx(500.0)   # 250 ms / 0.5 MP
    assert d["iqr_s"] == pytest.approx(0.175) and d["values_s"] == [0.30, 0.10, 0.20, 0.50]


def test_summarize_single_value_and_empty():
    s = summarize([0.7])
    assert (s.median_s, s.q1_s, s.q3_s, s.iqr_s) == (0.7, 0.7, 0.7, 0.0)
    with pytest.raises(ValueError):
        summarize([])


def test_rate_point_stats_over_images():
    per_image = [({"median_s": 0.1, "n": 5}, 1000, 1000),   # 1.0 MP → 100 ms/MP
                 ({"median_s": 0.3, "n": 5}, 500, 400),     # 0.2 MP → 1500 ms/MP
                 ({"median_s": 0.2, "n": 5}, 1000, 500)]    # 0.5 MP → 400 ms/MP
    st = rate_point_stats(per_image)
    assert st["images"] == 3 and st["runs"] == 15
    assert st["seconds"]["median_s"] == pytest.approx(0.2)
    assert (st["seconds"]["min_s"], st["seconds"]["max_s"]) == (0.1, 0.3)
    # seconds sorted .1 .2 .3: Q1 .15, Q3 .25.
    assert st["seconds"]["iqr_s"] == pytest.approx(0.1)
    # ms/MP sorted 100 400 1500: median 400, Q1 250, Q3 950.
    assert st["ms_per_mpx"]["median"] == pytest.approx(400.0)
    assert (st["ms_per_mpx"]["q1"], st["ms_per_mpx"]["q3"]) == pytest.approx((250.0, 950.0))


def test_time_cpu_returns_one_time_per_call_and_last_output():
    calls = []
    times, out = time_cpu(lambda: calls.append(1) or len(calls), 4)
    assert len(times) == 4 and out == 4 and len(calls) == 4


def test_time_cpu_times_a_sleep():
    times, _ = time_cpu(lambda: time.sleep(0.02), 3)
    assert all(0.02 <= t < 0.05 for t in times)


@pytest.mark.slow
def test_worker_times_only_the_calls():
    """tests/codecs/sleepy: encode sleeps 50 ms, decode 200 ms (sleep never returns early).

    With the counted run, warm-ups, model loading or image reading inside the timed region, or encode
    and decode swapped, the medians would miss these windows by far.
    """
    sub = load_submission(CODECS / "sleepy")
    result = runner.run_rate(sub, 0, conditions(repeats=3, warmup=2), ["cpu"])
    assert result.ok, result.error
    img = result.images[0]
    assert (img.name, img.width, img.height) == ("chelsea", 451, 300)
    enc, dec = img.timing["cpu"]["encode"], img.timing["cpu"]["decode"]
    assert enc.n == dec.n == 3
    assert 0.050 <= enc.min_s and enc.median_s < 0.075
    assert 0.200 <= dec.min_s and dec.median_s < 0.230
    # ms per megapixel of the median: 451 × 300 = 0.1353 MP.
    assert dec.ms_per_mpx == pytest.approx(dec.median_s * 1000 / 0.1353)
    assert result.timing["cpu"]["decode"].seconds.median_s == dec.median_s
    assert result.timing["cpu"]["decode"].runs == 3
    assert result.threads == 1 and result.environment.torch_threads == 1
    assert result.not_measured["gpu"].reason == "not requested: --device cpu"


def test_figures_that_do_not_summarise_fail_the_rate_point_with_the_suites_error(monkeypatch):
    """A suite error after the measurement (here: the per-rate statistics) is a failed rate point with the
    suite's error and its traceback, not a worker that ends with a bare exit status."""
    from profiler import worker

    def broken(per_image):
        raise ValueError("statistics out of order")

    monkeypatch.setattr(worker.timing, "rate_point_stats", broken)
    job = {"submission": str(CODECS / "tiny"), "rate_index": 0, "conditions": conditions(1, 0).to_dict(),
           "devices": ["cpu"], "seed": 0}
    result = worker.run_job(job)
    assert result.status == "failed" and result.error.kind == "suite"
    assert "ValueError: statistics out of order" in result.error.message
    assert "rate_point_stats" in result.error.traceback
