"""The environment fingerprint: its fields, torch's build summary parsed, and the packages the
submission imported, found in the worker."""

from importlib import metadata

import pytest
import torch

from profiler import runner
from profiler.conditions import CountingSpec, ImageSpec, TestConditions, TimingSpec
from profiler.environment import (distributions_of, fingerprint, installed_modules, merge_worker,
                                  packages_distributions, parse_torch_config)
from profiler.submission import files_hash, load_submission

from conftest import CODECS

CONFIG_SAMPLE = """PyTorch built with:
  - GCC 13.3
  - Intel(R) oneAPI Math Kernel Library Version 2024.2-Product Build 20240605 for Intel(R) 64 architecture applications
  - Intel(R) MKL-DNN v3.12.0 (Git Hash 80afa71049cd69a3df32adcccb623b12cd7baa22)
  - OpenMP 201511 (a.k.a. OpenMP 4.5)
  - CPU capability usage: AVX512
  - Build settings: BLAS_INFO=mkl, BUILD_TYPE=Release, CUDA_VERSION=13.0, CUDNN_VERSION=9.24.0, CXX_COMPILER=/x
"""


def test_parse_torch_config():
    assert parse_torch_config(CONFIG_SAMPLE) == {"mkl": "2024.2-Product", "onednn": "3.12.0", "openmp": "201511",
                                                 "cpu_capability": "AVX512", "blas": "mkl", "cuda": "13.0",
                                                 "cudnn": "9.24.0"}
    assert parse_torch_config("PyTorch built with:\n  - GCC 9\n")["onednn"] is None


def test_fingerprint_fields():
    env = fingerprint("ab" * 32, threads=1)
    for key in ("cpu_model", "cpu_count", "os", "python", "torch", "torch_build", "threads_configured",
                "cuda_available", "gpu_name", "nvidia_driver", "packages", "submission_files_sha256"):
        assert key in env, key
    assert env["cpu_count"] >= 1 and env["threads_configured"] == 1
    assert env["torch"] == torch.__version__ and env["packages"]["torch"] == metadata.version("torch")
    assert env["torch_build"]["variant"] == ("CUDA" if torch.version.cuda else "CPU")
    assert env["torch_build"]["mkldnn_available"] == torch.backends.mkldnn.is_available()
    assert env["submission_files_sha256"] == "ab" * 32
    if not torch.cuda.is_available():
        assert env["gpu_name"] is None and env["gpus"] == [] and env["nvidia_driver"] is None


def test_report_fingerprint_carries_the_submission_hash(tiny_dir):
    sub = load_submission(tiny_dir)
    cond = TestConditions()
    rep = runner.new_report(sub, cond, {})
    assert rep.environment.submission_files_sha256 == files_hash(tiny_dir) == rep.submission.files_sha256
    assert rep.environment.threads_configured == cond.timing.threads


def test_metrics_map_is_pending_until_a_worker_says_and_then_takes_the_workers_reasons(tiny_dir):
    # The command line imports no metric package for its report (they cost it ~2 s beside the first
    # workers): `measured` is unknown until a rate point's worker reports what it could not compute.
    from profiler.model.report import RateResult

    rep = runner.new_report(load_submission(tiny_dir), TestConditions(), {})
    assert rep.metrics["vmaf"].measured is None and rep.metrics["psnr_y"].measured is None
    old = RateResult(index=0, target_bpp=0.5)                    # from a report before workers said
    assert runner._with_rates(rep, [old]).metrics["vmaf"].measured is None
    said = RateResult(index=1, target_bpp=1.0,
                      environment={"metrics_unavailable": {"vmaf": "not measured: vmaf-torch cannot be imported"}})
    all_ok = RateResult(index=2, target_bpp=2.0, environment={"metrics_unavailable": {}})
    out = runner._with_rates(rep, [old, said, all_ok]).metrics
    assert out["vmaf"].measured is False
    # 2.0 bpp's worker had it: the reason names the rate point whose pictures lack it.
    assert out["vmaf"].reason == ("not measured: vmaf-torch cannot be imported (on the workers of 1 bpp; "
                                  "1 other rate point(s) have it)")
    only = runner._with_rates(rep, [said]).metrics
    assert only["vmaf"].reason == "not measured: vmaf-torch cannot be imported"
    assert out["iw_ssim"].measured is True and out["iw_ssim"].reason == ""
    assert out["iw_ssim"].package == "piq" and out["psnr_rgb"].name == "PSNR-RGB"


def test_distributions_of_leaves_out_stdlib_and_unknown():
    found = distributions_of({"yaml", "json", "no_such_module_xyz"})
    assert found == {"PyYAML": metadata.version("PyYAML")}


def _fake_distribution(site, name: str, top_level: list[str], recorded: list[str]) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "top_level.txt").write_text("\n".join(top_level) + "\n")
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in recorded + [f"{info.name}/RECORD"]))


def test_a_module_is_attributed_only_to_the_distribution_whose_files_hold_it(tmp_path, monkeypatch):
    """Two wheels claim the top-level name `sharedname` (as compressai and pyiqa both claim `docs` and
    `tests`); only fake_a's RECORD lists the file that was imported. `localname` is claimed by fake_b but
    imported from a folder of the working directory: no distribution's."""
    import importlib
    import sys

    site, work = tmp_path / "site", tmp_path / "work"
    (site / "sharedname").mkdir(parents=True)
    (site / "sharedname" / "__init__.py").write_text("")
    (work / "localname").mkdir(parents=True)
    (work / "localname" / "__init__.py").write_text("")
    _fake_distribution(site, "fake_a", ["sharedname"], ["sharedname/__init__.py"])
    _fake_distribution(site, "fake_b", ["sharedname", "localname"], ["localname/__init__.py"])
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(work))
    for mod in ("sharedname", "localname"):
        monkeypatch.delitem(sys.modules, mod, raising=False)
    packages_distributions.cache_clear()
    try:
        claimed = packages_distributions()
        assert sorted(claimed["sharedname"]) == ["fake_a", "fake_b"] and claimed["localname"] == ["fake_b"]
        importlib.import_module("sharedname")
        importlib.import_module("localname")
        assert installed_modules({"sharedname", "localname", "json"}) == {"sharedname": ["fake_a"]}
        assert distributions_of({"sharedname", "localname"}) == {"fake_a": "1.0"}
    finally:
        for mod in ("sharedname", "localname"):
            sys.modules.pop(mod, None)
        packages_distributions.cache_clear()


def test_merge_worker_unions_packages_and_threads():
    env = merge_worker({}, {"torch_threads": 1, "submission_imported": {"compressai": "1.2.8"}})
    env = merge_worker(env, {"torch_threads": 1, "submission_imported": {"PyYAML": "6.0"}})
    assert merge_worker(env, None) == env
    assert env == {"packages_submission": {"compressai": "1.2.8", "PyYAML": "6.0"}, "threads_used": [1]}


@pytest.mark.slow
def test_worker_records_what_the_submission_imported(tmp_path):
    """tests/codecs/leaky imports PyYAML, which the suite has not imported when the codec is built."""
    sub = load_submission(CODECS / "leaky")
    cond = TestConditions(images=ImageSpec(builtin=("chelsea",)), counting=CountingSpec(resolutions=()),
                          timing=TimingSpec(repeats=1, warmup=1, devices=("cpu",)))
    report = runner.profile(sub, cond, tmp_path, [0], ["cpu"])
    assert report.rates[0].ok, report.rates[0].error
    assert report.rates[0].environment.submission_imported == {"PyYAML": metadata.version("PyYAML")}
    assert report.environment.packages_submission == {"PyYAML": metadata.version("PyYAML")}
    assert report.environment.threads_used == [1]
    # The worker said which metrics it could compute (every one: the dev install has them all).
    assert report.rates[0].environment.metrics_unavailable == {}
    assert all(report.metrics[k].measured is True for k in ("vmaf", "iw_ssim", "nlpd", "psnr_hvs_m"))


@pytest.mark.slow
def test_a_worker_forked_after_the_zygote_preloaded_the_submissions_package_still_lists_it(tmp_path):
    """One rate point after the other (--jobs 1): the first worker's submission imports PyYAML, which the
    runner then has the zygote import (profiler/zygote.py); the second worker finds it imported, and still
    lists it as its submission's. The leaky codec's bitstream counts this process's encodes: both 4 bytes,
    so the zygote ran none of the codec."""
    sub = load_submission(CODECS / "leaky")
    cond = TestConditions(images=ImageSpec(builtin=("chelsea",)), counting=CountingSpec(resolutions=()),
                          timing=TimingSpec(repeats=1, warmup=0, devices=("cpu",)))
    report = runner.profile(sub, cond, tmp_path, [0, 1], ["cpu"], jobs=1)
    first, second = sorted(report.rates, key=lambda r: r.index)
    assert first.ok and second.ok, (first.error, second.error)
    assert (first.worker.started_from, second.worker.started_from) == ("zygote", "zygote")
    # Exactly the module the submission imported (yaml imports its C binding _yaml itself).
    assert (first.worker.preloaded, second.worker.preloaded) == ([], ["yaml"])
    assert first.environment.submission_modules == second.environment.submission_modules == ["yaml"]
    version = {"PyYAML": metadata.version("PyYAML")}
    assert first.environment.submission_imported == second.environment.submission_imported == version
    assert first.images[0].bytes == second.images[0].bytes == 4
