import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CODECS = Path(__file__).resolve().parent / "codecs"


@pytest.fixture
def tiny_dir() -> Path:
    return CODECS / "tiny"


# A valid manifest (two rate points, one with weights), the base of the submission and bad-input tests.
VALID_MANIFEST = """
[submission]
proponent = "Acme Labs"
codec = "AcmeNet"
version = "1.0"
entry = "codec:build"

[precision]
encoder = "float32"
decoder = "int8"

[[rates]]
target_bpp = 0.06
weights = "weights/r006.safetensors"
options = { quality = 1 }

[[rates]]
target_bpp = 0.5
"""


# Test conditions of the fixture end-to-end runs: one small picture, no extra resolutions, one repeat.
SMOKE_CONFIG = """
[images]
builtin = ["chelsea"]
[counting]
resolutions = []
[timing]
warmup = 1
repeats = 1
"""


# The entry module of the bad-input tests: it leaves a marker (RAN) if anything of the submission runs.
MARKER_CODEC = """
from pathlib import Path
Path(__file__).with_name("RAN").write_text("the submission's code ran")

def build(rate, device):
    raise NotImplementedError
"""


def one_line_error(capsys, argv: list[str], file_part, field: str | None, words: str) -> str:
    """`jpegai-profile argv`, run in process: exit status 2 and exactly one line on stderr,
    `jpegai-profile: error: …` naming `file_part` and (when given) `: field: `, holding `words`; no
    traceback anywhere. Returns the line."""
    from profiler.cli import main

    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("jpegai-profile: error: "), line
    assert str(file_part) in line, line
    if field:
        assert f": {field}: " in line, line
    assert words in line, line
    assert "Traceback" not in out + err
    return line


def write_manifest(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "submission.toml").write_text(text)
    return directory


def run_cli(*args: str, cwd: Path | None = None):
    """Run the console entry point in a subprocess, as a user would."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "profiler", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=900)


class NetworksCodec:
    """A codec double for counting tests: its networks are `self.encoder` / `self.decoder` (set by the
    subclass); encode/decode code nothing."""

    def encode_networks(self, x):
        return self.encoder(x)

    def decode_networks(self, y):
        return self.decoder(y)

    def encode(self, x):
        return b""

    def decode(self, bits):
        import torch

        return torch.zeros(1)


def minimal_report(rates=(), **fields):
    """A valid Report around these rate points (a fixed submission and the default test conditions)."""
    from profiler.conditions import TestConditions
    from profiler.model.report import Report

    data = {"submission": {"directory": "/x", "proponent": "Test Lab", "codec": "test", "version": "0",
                           "entry": "codec:build", "precision": {"encoder": "float32", "decoder": "float32"},
                           "rates": [{"index": r.index, "target_bpp": r.target_bpp} for r in rates]},
            "conditions": TestConditions().to_dict(), "rates": list(rates), "schema_version": "2.0",
            "tool": {"version": "0"}, "created": "2026-01-01T00:00:00+00:00",
            "run": {"state": "complete", "planned_rates": [r.target_bpp for r in rates]}}
    data.update(fields)
    return Report.model_validate(data)
