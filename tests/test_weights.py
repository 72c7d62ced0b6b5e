"""Weights are read by the suite, safely, and handed to build() as `rate.state_dict`."""

import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from profiler.errors import InputError
from profiler.submission import load_submission, load_weights, with_weights

from conftest import run_cli, write_manifest

MANIFEST = """
[submission]
proponent = "Acme Labs"
codec = "AcmeNet"
entry = "codec:build"

[precision]
encoder = "float32"
decoder = "float32"

[[rates]]
target_bpp = 0.25
weights = "{weights}"
"""


class MarkerPayload:
    """Unpickling calls `os.system("touch MARKER")`: what a malicious checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class ExecPayload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def _submission(tmp_path: Path, weights_name: str) -> Path:
    d = write_manifest(tmp_path / "acme", MANIFEST.format(weights=f"weights/{weights_name}"))
    (d / "weights").mkdir(exist_ok=True)
    (d / "codec.py").write_text("def build(rate, device):\n    return rate.state_dict\n")
    return d


@pytest.mark.parametrize("payload", [MarkerPayload, ExecPayload])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, payload):
    marker = tmp_path / "MARKER"
    d = _submission(tmp_path, "r025.pth")
    torch.save({"g_s.0.weight": torch.ones(3), "extra": payload(marker)}, str(d / "weights" / "r025.pth"))
    # The payload is real: plain pickle would run it (checked on a copy, in this process, then removed).
    pickle.loads(pickle.dumps(payload(tmp_path / "PROOF")))
    assert (tmp_path / "PROOF").exists()

    with pytest.raises(InputError) as info:
        load_submission(d)
    assert "rates[0].weights" in str(info.value) and "refused: it calls" in str(info.value)
    assert ("it calls posix.system" if payload is MarkerPayload else "it calls exec") in str(info.value)
    with pytest.raises(InputError):
        load_weights(d / "weights" / "r025.pth")
    proc = run_cli(str(d), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "refused" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_safetensors_reach_build_as_state_dict(tmp_path):
    d = _submission(tmp_path, "r025.safetensors")
    tensors = {"g_s.0.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "g_s.0.bias": torch.tensor([0.5, -2.0])}
    save_file(tensors, str(d / "weights" / "r025.safetensors"))
    sub = load_submission(d)
    rate = with_weights(sub.rates[0], sub.manifest)
    assert rate.weights == d / "weights" / "r025.safetensors"
    assert sorted(rate.state_dict) == ["g_s.0.bias", "g_s.0.weight"]
    assert rate.state_dict["g_s.0.weight"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert rate.state_dict["g_s.0.bias"].tolist() == [0.5, -2.0]


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pt_checkpoint_unwrapped(tmp_path, zip_format):
    d = _submission(tmp_path, "r025.pt")
    torch.save({"state_dict": {"w": torch.tensor([1.0, 2.0, 3.0])}}, str(d / "weights" / "r025.pt"),
               _use_new_zipfile_serialization=zip_format)
    sub = load_submission(d)
    rate = with_weights(sub.rates[0], sub.manifest)
    assert list(rate.state_dict) == ["w"] and rate.state_dict["w"].tolist() == [1.0, 2.0, 3.0]


def test_rate_without_weights_has_no_state_dict(tmp_path):
    d = write_manifest(tmp_path / "acme", MANIFEST.replace('weights = "{weights}"\n', ""))
    (d / "codec.py").write_text("def build(rate, device):\n    pass\n")
    rate = with_weights(load_submission(d).rates[0], d / "submission.toml")
    assert rate.weights is None and rate.state_dict is None


def test_weights_inside_a_subfolder_through_a_link_inside_is_fine(tmp_path):
    d = _submission(tmp_path, "link.safetensors")
    (d / "store").mkdir()
    save_file({"w": torch.zeros(4)}, str(d / "store" / "real.safetensors"))
    (d / "weights" / "link.safetensors").symlink_to(d / "store" / "real.safetensors")
    sub = load_submission(d)
    assert sub.rates[0].weights == (d / "store" / "real.safetensors").resolve()


def test_entry_module_linked_from_outside_is_refused(tmp_path):
    d = _submission(tmp_path, "r025.safetensors")
    save_file({"w": torch.zeros(1)}, str(d / "weights" / "r025.safetensors"))
    (tmp_path / "elsewhere.py").write_text("def build(rate, device):\n    pass\n")
    (d / "codec.py").unlink()
    (d / "codec.py").symlink_to(tmp_path / "elsewhere.py")
    with pytest.raises(InputError) as info:
        load_submission(d)
    assert "submission.entry" in str(info.value) and "outside the submission directory" in str(info.value)
