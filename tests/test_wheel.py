"""A built wheel, installed without its dependencies into a fresh virtual environment that sees the test
environment's packages, runs the main job from another folder: the default test conditions ship in the
package (a non-editable install used to stop with `site-packages/profile.toml: file not found`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_wheel_installed_with_no_deps_runs_the_main_job_elsewhere(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "profiler", src / "profiler", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(src)], check=True, capture_output=True, timeout=600)
    (wheel,) = dist.glob("jpegai_profile-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # The test environment's packages (torch, compressai …) are visible; its editable jpegai-profile is
    # not: a path added by a .pth file is not itself a site directory, so its own .pth files are not read.
    (site / "test-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, timeout=600)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([str(py), "-c", "import profiler; print(profiler.__file__)"], cwd=elsewhere,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(site), where
    proc = subprocess.run([str(venv / "bin" / "jpegai-profile"), str(ROOT / "submissions" / "refnet"), "--quick",
                           "--device", "cpu"], cwd=elsewhere, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((elsewhere / "reports" / "refnet" / "report.json").read_text())
    assert report["conditions"]["source"].startswith(str(site)), report["conditions"]["source"]
    assert report["rates"][0]["status"] == "ok" and report["compliance"]["rules_source"].startswith(str(site))
