"""Rate points on a real Dask cluster (profiler/cluster.py): a `LocalCluster` of two worker processes on
127.0.0.1 (the `dask` extra).

The fixture is tests/codecs/stamped: the tiny codec (parameters counted by hand in test_params.py) at
three rate points, writing `time.monotonic()` around each of its own encode()/decode() calls and the CPUs
it may run on (a timed phase is pinned to its slot's cores, the untimed work to the others), so the test
sees from the codec's own clock whether two timed phases of one host overlapped.

- `--jobs 2` on the cluster gives the serial run's parameters, counts and bitstream hashes;
- two timed phases never overlap with the default slots (one per host), and the cluster's workers did
  run at the same time (else the check would prove nothing);
- `--resume` on the cluster keeps the rate points it measured;
- every connected worker must hold the client's files (sha256) before anything runs;
- a Dask worker process killed during a rate point: run again once, and the profile completes;
- `batch` over two submissions with `--jobs 2` gives one aggregate.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

from profiler.cluster import check_workers, connect, profile_on, shared_files_problem  # noqa: E402
from profiler.conditions import load_conditions  # noqa: E402
from profiler.errors import InputError  # noqa: E402
from profiler.runner import profile  # noqa: E402
from profiler.submission import files_fingerprint, load_submission  # noqa: E402

from conftest import CODECS, SMOKE_CONFIG, run_cli  # noqa: E402

pytestmark = pytest.mark.slow
STAMPED = CODECS / "stamped"


@pytest.fixture(scope="module")
def stamps(tmp_path_factory):
    """JPEGAI_STAMPS for every worker process started from here on (the cluster's inherit it)."""
    folder = tmp_path_factory.mktemp("stamps")
    old = os.environ.get("JPEGAI_STAMPS")
    os.environ["JPEGAI_STAMPS"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("JPEGAI_STAMPS", None)
    else:
        os.environ["JPEGAI_STAMPS"] = old


@pytest.fixture(scope="module")
def client(stamps):
    with connect(jobs=2) as c:
        c.wait_for_workers(2, timeout=120)
        yield c


@pytest.fixture(scope="module")
def cond(tmp_path_factory):
    cfg = tmp_path_factory.mktemp("cfg") / "profile.toml"
    cfg.write_text(SMOKE_CONFIG)
    return load_conditions(cfg)


@pytest.fixture(scope="module")
def runs(client, cond, stamps, tmp_path_factory):
    """(the serial report, the cluster report, the stamps of the cluster run by worker pid, its folder)."""
    sub = load_submission(STAMPED)
    out = tmp_path_factory.mktemp("runs")
    serial = profile(sub, cond, out / "serial", [0, 1, 2], ["cpu"])
    for f in stamps.glob("*.jsonl"):
        f.unlink()
    on_cluster = profile_on(client, sub, cond, out / "dask", [0, 1, 2], ["cpu"])
    calls = {f.stem: [json.loads(line) for line in f.read_text().splitlines()] for f in stamps.glob("*.jsonl")}
    return serial, on_cluster, calls, out / "dask"


# A counted call's own wall time and its share outside ops are measurements of time, not counts.
CLOCKED = {"wall_s", "ops_s", "outside_ops_share"}


def _figures(report):
    return {r.target_bpp: (r.status, r.params.model_dump() if r.params else None,
                           [(p.name, p.bytes, p.bitstream_sha256, p.decoded_sha256,
                             {k: c.model_dump(exclude=CLOCKED) for k, c in p.counts.items()}) for p in r.images],
                           [res.model_dump() for res in r.resolutions])
            for r in report.rates}


def test_jobs_2_on_the_cluster_equals_the_serial_run(runs):
    serial, on_cluster, _, _ = runs
    assert [r.target_bpp for r in on_cluster.rates] == [0.25, 0.5, 1.0]
    assert all(r.ok for r in on_cluster.rates) and on_cluster.run.state == "complete"
    assert _figures(on_cluster) == _figures(serial)
    assert on_cluster.rates[0].images[0].counts["decoder"].macs > 0
    p = on_cluster.rates[0].params
    assert (p.encoder, p.decoder) == (136, 300)          # the hand count of tests/test_params.py
    assert all(r.host is not None and r.host.hostname for r in on_cluster.rates)
    assert on_cluster.options.jobs == 2


def test_two_timed_phases_on_one_host_never_overlap(runs):
    _, on_cluster, calls, _ = runs
    assert len(calls) == 3                                   # one worker process per rate point
    slot_cores = {tuple(h.cores) for r in on_cluster.rates for h in r.worker.slots}
    assert len(slot_cores) == 1                              # one slot per host: its cores
    cores = list(next(iter(slot_cores)))
    spans, lives = [], []
    for pid, lines in calls.items():
        timed = [c for c in lines if c["cpus"] == cores]
        untimed = [c for c in lines if c["cpus"] != cores]
        assert timed and untimed, lines          # pinned to the slot for the timed phase, away after it
        spans.append((min(c["t0"] for c in timed), max(c["t1"] for c in timed)))
        lives.append((min(c["t0"] for c in lines), max(c["t1"] for c in lines)))
    spans.sort()
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start, spans
    # The rate points' workers did run at once (their untimed work beside another's timed phase):
    lives.sort()
    assert any(b[0] < a[1] for a, b in zip(lives, lives[1:])), lives


def test_resume_on_the_cluster_keeps_what_it_measured(runs, client, cond):
    _, on_cluster, _, out = runs
    notices = []
    again = profile_on(client, load_submission(STAMPED), cond, out, [0, 1, 2], ["cpu"],
                       lambda kind, info: notices.append(info["message"]) if kind == "resume" else None, resume=True)
    assert notices and "3 rate point(s) done" in notices[0] and "0 to run" in notices[0]
    assert again.run.resumed_rates == [0.25, 0.5, 1.0] and again.run.state == "complete"
    assert _figures(again) == _figures(on_cluster)


def test_the_workers_must_hold_the_clients_files_before_any_run(client, tmp_path):
    assert shared_files_problem({str(STAMPED): files_fingerprint(STAMPED)[0]}) is None
    assert "is not there" in shared_files_problem({str(tmp_path / "nowhere"): "0" * 64})
    with pytest.raises(InputError) as err:
        check_workers(client, {str(STAMPED): "0" * 64})
    assert "Dask worker tcp://127.0.0.1:" in str(err.value) and "does not hold the client's files" in str(err.value)


def test_a_killed_worker_process_is_retried_and_the_profile_completes(client, cond, tmp_path):
    sub = load_submission(STAMPED)
    killed: list[int] = []

    def progress(kind: str, info: dict) -> None:
        if killed or kind != "phase" or info.get("phase") != "building":
            return
        prefix = f"jpegai-rate-{info['rate']:g}-"
        for address, keys in client.processing().items():
            if any(str(k).startswith(prefix) for k in keys):
                pid = client.run(os.getpid, workers=[address])[address]
                os.kill(pid, signal.SIGKILL)
                killed.append(info["rate"])
                return

    t0 = time.monotonic()
    report = profile_on(client, sub, cond, tmp_path, [0, 1, 2], ["cpu"], progress)
    assert killed, "no worker was killed"
    assert all(r.ok for r in report.rates), [(r.target_bpp, r.error) for r in report.rates]
    again = next(r for r in report.rates if r.target_bpp == killed[0])
    assert any("was lost during this rate point" in line for line in again.worker.restarts), again.worker.restarts
    others = [r for r in report.rates if r.target_bpp != killed[0]]
    assert all(not r.worker.restarts for r in others)
    assert time.monotonic() - t0 < 300


def test_batch_over_two_submissions_gives_one_aggregate(tmp_path):
    cfg = tmp_path / "profile.toml"
    cfg.write_text(SMOKE_CONFIG)
    proc = run_cli("batch", str(STAMPED), str(CODECS / "tiny"), "--jobs", "2", "--config", str(cfg),
                   "--device", "cpu", "--out", str(tmp_path / "reports"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "reports" / "stamped" / "report.json").is_file()
    assert (tmp_path / "reports" / "tiny" / "report.json").is_file()
    import csv

    rows = list(csv.DictReader((tmp_path / "reports" / "aggregate" / "aggregate.csv").open()))
    assert sorted(r["codec"] for r in rows if r["row"] == "summary") == ["stamped", "tiny"]
    assert len([r for r in rows if r["row"] == "rate"]) == 3 + 2
