"""The machine each rate point was timed on (issue 15): recorded per rate point, flagged within one report
when its rate points ran on different CPU models or torch builds, and compared across reports by
`aggregate` (CPU model, torch build, threads), one flag per row measured elsewhere.

The reports are the betanet fixture (two rate points, 0.25 and 0.5 bpp, one torch thread, environment
"Fixture CPU" / torch 2.14.1) with hosts and threads written in by hand.
"""

from __future__ import annotations

import socket
from pathlib import Path

from profiler import derive
from profiler.aggregation import aggregate, to_html, to_markdown
from profiler.model.io import read_report, write_report
from profiler.model.report import HostInfo
from profiler.render import html, markdown, table, txt

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _betanet(hosts=(None, None), proponent: str | None = None, threads: int | None = None):
    rep = read_report(FIXTURES / "report_betanet.json")
    rates = [r.model_copy(update={"host": None if h is None else HostInfo(**h),
                                  **({"threads": threads} if threads else {})})
             for r, h in zip(rep.rates, hosts)]
    sub = rep.submission if proponent is None else rep.submission.model_copy(
        update={"proponent": proponent, "codec": proponent.lower()})
    return rep.model_copy(update={"rates": rates, "submission": sub})


A = {"hostname": "node1", "cpu_model": "Xeon A", "torch": "2.14.1", "torch_git": "abcdef0123", "torch_variant": "CPU"}
A2 = {**A, "hostname": "node2"}                            # another host of the same kind
B = {**A, "hostname": "node3", "cpu_model": "EPYC B"}
T = {**A, "hostname": "node4", "torch": "2.13.0"}


def test_one_machine_or_many_hosts_of_one_kind_is_not_flagged():
    assert derive.mixed_hosts(_betanet((A, A))) == []
    assert derive.mixed_hosts(_betanet((A, A2))) == []           # hostnames differ, CPU and torch do not
    assert derive.mixed_hosts(_betanet()) == []                  # no hosts recorded (an older report)
    assert table.hosts_note(_betanet((A, A2))) is None


def test_rate_points_on_two_cpu_models_are_flagged_in_every_renderer():
    rep = _betanet((A, B))
    assert derive.mixed_hosts(rep) == ["rate points timed on different CPU models: Xeon A (0.25 bpp); "
                                       "EPYC B (0.5 bpp)"]
    note = table.hosts_note(rep)
    assert "Xeon A (0.25 bpp)" in note and "not comparable" in note
    assert "Mixed machines" in markdown.render(rep) and "EPYC B (0.5 bpp)" in markdown.render(rep)
    assert "mixed hosts" in txt.render(rep)
    assert "id=mixed-hosts" in html.render(rep)
    assert "Mixed machines" not in markdown.render(_betanet((A, A2)))


def test_rate_points_on_two_torch_builds_are_flagged():
    assert derive.mixed_hosts(_betanet((A, T))) == [
        "rate points timed on different torch builds: 2.14.1 (git abcdef0, CPU) (0.25 bpp); "
        "2.13.0 (git abcdef0, CPU) (0.5 bpp)"]


def test_a_failed_rate_point_is_not_compared():
    rep = _betanet((A, B))
    rates = [rep.rates[0], rep.rates[1].model_copy(update={"status": "failed"})]
    assert derive.mixed_hosts(rep.model_copy(update={"rates": rates})) == []


def _aggregate(tmp_path, reports):
    for i, rep in enumerate(reports):
        path = tmp_path / f"r{i}" / "report.json"
        path.parent.mkdir(parents=True)
        write_report(rep, path)
    return aggregate([tmp_path])


def test_aggregate_flags_the_rows_measured_on_another_cpu_model(tmp_path):
    df = _aggregate(tmp_path, [_betanet((A, A), "One"), _betanet((A2, A2), "Two"), _betanet((A, B), "Three")])
    rows = {(r["proponent"], r["row"], r["target_bpp"] if r["row"] == "rate" else None): r["warning"]
            for _, r in df.iterrows()}
    flag = "measured on another machine: CPU model EPYC B (others Xeon A)"
    assert rows[("Three", "rate", 0.5)].endswith(flag)
    # the report's own rate points differ too: said on each of its rows
    assert rows[("Three", "rate", 0.25)] == ("rate points timed on different CPU models: Xeon A (0.25 bpp); "
                                             "EPYC B (0.5 bpp)")
    assert flag in rows[("Three", "summary", None)] and "rate point 0.5 bpp" in rows[("Three", "summary", None)]
    assert all(not w for (p, _, _), w in rows.items() if p in ("One", "Two"))
    assert flag in to_markdown(df) and "EPYC B" in to_html(df)


def test_aggregate_flags_torch_build_and_threads_against_most_reports(tmp_path):
    # environment only (no hosts, as reports before 0.1 recorded them): the report's CPU and torch
    reps = [_betanet(proponent="One"), _betanet(proponent="Two"), _betanet(proponent="Four", threads=4),
            _betanet((T, T), "Torch")]
    df = _aggregate(tmp_path, reps)
    summary = {r["proponent"]: r["warning"] for _, r in df[df["row"] == "summary"].iterrows()}
    assert summary["One"] == summary["Two"] == ""
    assert "threads 4 (others 1)" in summary["Four"]
    # its hosts' CPU model is not the environment's "Fixture CPU" either: both named
    assert "torch build 2.13.0 (git abcdef0, CPU) (others 2.14.1)" in summary["Torch"]
    assert "CPU model Xeon A (others Fixture CPU)" in summary["Torch"]


def test_run_rate_records_the_host_it_ran_on(tmp_path):
    """A real rate point of the tiny fixture codec (one small picture, no extra resolutions)."""
    from profiler.conditions import load_conditions
    from profiler.runner import run_rate
    from profiler.submission import load_submission

    from conftest import CODECS, SMOKE_CONFIG

    cfg = tmp_path / "profile.toml"
    cfg.write_text(SMOKE_CONFIG)
    sub = load_submission(CODECS / "tiny")
    r = run_rate(sub, sub.rates[0].index, load_conditions(cfg), ["cpu"])
    import torch

    assert r.ok and r.host is not None
    assert r.host.hostname == socket.gethostname() and r.host.torch == torch.__version__
    assert r.host.cpu_model and r.host.torch_variant in ("CPU", "CUDA", "ROCm")
