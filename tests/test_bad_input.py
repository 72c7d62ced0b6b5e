"""Bad input: each malformed manifest, profile.toml or CLI value gives exit status 2 and one line naming
the file and the field, with no traceback; nothing of the submission runs.

The table runs the CLI in process (`profiler.cli.main`, as the console script does) so it stays fast;
two cases run it in a subprocess, as a user would, with and without --debug.
"""

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import MARKER_CODEC, VALID_MANIFEST, one_line_error, run_cli, write_manifest

VALID = VALID_MANIFEST

CODEC = MARKER_CODEC   # build() would leave a marker if anything of the submission ran


class Evil:
    """Unpickling this calls os.system: what a malicious .pth would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def make_valid(tmp_path: Path) -> Path:
    d = write_manifest(tmp_path / "acme", VALID)
    (d / "codec.py").write_text(CODEC)
    (d / "weights").mkdir()
    save_file({"w": torch.zeros(2)}, str(d / "weights" / "r006.safetensors"))
    return d


def _weights(name: str, make):
    """An edit that also writes a weights file `name` (via `make(path)`) and points rate 0 at it."""
    def edit(text, d):
        make(d / "weights" / name)
        return text.replace("weights/r006.safetensors", f"weights/{name}")
    return edit


def _truncated_safetensors(path):
    save_file({"w": torch.zeros(1000)}, str(path))
    path.write_bytes(path.read_bytes()[:-100])


def _malicious_pt(path):
    torch.save({"w": torch.zeros(2), "payload": Evil(path.parent / "PWNED")}, str(path))


def _symlink_out(text, d):
    (d / "weights" / "link.safetensors").symlink_to(d.parent / "outside.safetensors")
    save_file({"w": torch.zeros(2)}, str(d.parent / "outside.safetensors"))
    return text.replace("r006.safetensors", "link.safetensors")


def _no_build(text, d):
    (d / "codec.py").write_text("def make(rate, device):\n    pass\n")
    return text


def _syntax_error(text, d):
    (d / "codec.py").write_text("def build(rate, device)\n    pass\n")
    return text


def t(edit):
    """A plain text edit of the manifest as a (text, dir) edit."""
    return lambda text, d: edit(text)


# (id, edit(text, dir) → manifest text, field named in the message, words expected in the message)
MANIFEST_CASES = [
    ("not-toml", t(lambda s: s + "\n[[rates\n"), None, "not valid TOML"),
    ("submission-table-typo", t(lambda s: s.replace("[submission]", "[submision]")), "submision", "unknown field"),
    ("missing-proponent", t(lambda s: s.replace('proponent = "Acme Labs"\n', "")), "submission.proponent", "missing"),
    ("empty-proponent", t(lambda s: s.replace('"Acme Labs"', '""')), "submission.proponent", "must not be empty"),
    ("proponent-not-string", t(lambda s: s.replace('"Acme Labs"', "42")), "submission.proponent", "expected a string"),
    ("codec-not-printable", t(lambda s: s.replace('"AcmeNet"', '"Acme\\tNet"')), "submission.codec", "printable"),
    ("codec-no-letter", t(lambda s: s.replace('"AcmeNet"', '"[ ]"')), "submission.codec", "letter or digit"),
    ("unknown-submission-field", t(lambda s: s.replace('version = "1.0"', 'verison = "1.0"')),
     "submission.verison", "unknown field"),
    ("unknown-table", t(lambda s: s.replace("[[rates]]", "[[rate]]", 1)), "rate", "unknown field"),
    ("missing-entry", t(lambda s: s.replace('entry = "codec:build"\n', "")), "submission.entry", "missing"),
    ("entry-without-callable", t(lambda s: s.replace('"codec:build"', '"codec"')), "submission.entry", "module:callable"),
    ("entry-module-missing", t(lambda s: s.replace('"codec:build"', '"nowhere:build"')), "submission.entry",
     "not found in the submission directory"),
    ("entry-callable-missing", _no_build, "submission.entry", "defines no 'build'"),
    ("entry-syntax-error", _syntax_error, "submission.entry", "codec.py line 1: not valid Python"),
    ("unknown-precision", t(lambda s: s.replace('decoder = "int8"', 'decoder = "int"')), "precision.decoder",
     "unknown precision"),
    ("precision-bits-out-of-range", t(lambda s: s.replace('decoder = "int8"', 'decoder = "int65"')),
     "precision.decoder", "unknown precision"),
    ("missing-precision", t(lambda s: s.replace('encoder = "float32"\n', "")), "precision.encoder", "missing"),
    ("no-rates", t(lambda s: s.split("[[rates]]")[0]), "rates", "missing"),
    ("rates-not-tables", t(lambda s: "rates = [1, 2]\n" + s.split("[[rates]]")[0]), "rates[0]", "expected a table"),
    ("rate-not-number", t(lambda s: s.replace("target_bpp = 0.5", 'target_bpp = "0.5"')), "rates[1].target_bpp",
     "expected a number"),
    ("rate-zero", t(lambda s: s.replace("target_bpp = 0.5", "target_bpp = 0")), "rates[1].target_bpp", "positive"),
    ("rate-negative", t(lambda s: s.replace("target_bpp = 0.5", "target_bpp = -0.5")), "rates[1].target_bpp",
     "positive"),
    ("rate-infinite", t(lambda s: s.replace("target_bpp = 0.5", "target_bpp = inf")), "rates[1].target_bpp", "finite"),
    ("rate-nan", t(lambda s: s.replace("target_bpp = 0.5", "target_bpp = nan")), "rates[1].target_bpp", "finite"),
    ("rate-duplicate", t(lambda s: s.replace("target_bpp = 0.5", "target_bpp = 0.06")), "rates[1].target_bpp",
     "duplicate"),
    ("rate-unknown-field", t(lambda s: s.replace("target_bpp = 0.5", "target_bpp = 0.5\nweight = 'x'")),
     "rates[1].weight", "unknown field"),
    ("options-not-table", t(lambda s: s.replace("options = { quality = 1 }", "options = 3")), "rates[0].options",
     "expected a table"),
    ("weights-missing", t(lambda s: s.replace("r006.safetensors", "nope.safetensors")), "rates[0].weights",
     "not found"),
    ("weights-escape-dotdot", t(lambda s: s.replace('"weights/r006.safetensors"', '"../../etc/passwd"')),
     "rates[0].weights", "escapes the submission directory"),
    ("weights-absolute", t(lambda s: s.replace('"weights/r006.safetensors"', '"/etc/passwd"')),
     "rates[0].weights", "relative to the submission directory"),
    ("weights-symlink-escape", _symlink_out, "rates[0].weights", "escapes the submission directory"),
    ("weights-wrong-suffix", _weights("r006.npz", lambda p: p.write_bytes(b"PK")), "rates[0].weights",
     "expected a .safetensors, .pt or .pth"),
    ("weights-empty", _weights("r006.pt", lambda p: p.write_bytes(b"")), "rates[0].weights", "is empty"),
    ("weights-truncated-safetensors", _weights("cut.safetensors", _truncated_safetensors), "rates[0].weights",
     "not a valid safetensors file"),
    ("weights-corrupt-pt", _weights("r006.pth", lambda p: p.write_bytes(b"not a checkpoint" * 8)),
     "rates[0].weights", "not a valid torch.save file"),
    ("weights-malicious-pickle", _weights("r006.pt", _malicious_pt), "rates[0].weights",
     "refused: it calls posix.system"),
    ("weights-not-a-dict", _weights("r006.pt", lambda p: torch.save([torch.zeros(2)], str(p))), "rates[0].weights",
     "expected a dict of tensors"),
    ("weights-dict-with-non-tensor", _weights("r006.pt", lambda p: torch.save({"w": torch.zeros(2), "epoch": 3}, str(p))),
     "rates[0].weights", "entry 'epoch' is a int"),
]


@pytest.mark.parametrize("case_id,edit,field,words", MANIFEST_CASES, ids=[c[0] for c in MANIFEST_CASES])
def test_malformed_manifest(tmp_path, capsys, case_id, edit, field, words):
    d = make_valid(tmp_path)
    manifest = d / "submission.toml"
    manifest.write_text(edit(VALID, d))
    one_line_error(capsys, [str(d), "--out", str(tmp_path / "out")], str(manifest), field, words)
    # Nothing of the submission ran, no weights were unpickled, no worker started, no report written.
    assert not (d / "RAN").exists() and not (d / "weights" / "PWNED").exists()
    assert not (tmp_path / "out").exists()


def test_manifest_table_has_at_least_20_cases():
    assert len(MANIFEST_CASES) >= 20


CONFIG_CASES = [
    ("config-not-toml", "[worker\n", None, "not valid TOML"),
    ("timeout-not-number", "[worker]\ntimeout_s = \"fast\"\n", "worker.timeout_s", "expected a number"),
    ("timeout-zero", "[worker]\ntimeout_s = 0\n", "worker.timeout_s", "must be positive"),
    ("memory-limit-zero", "[worker]\nmemory_limit_mib = 0\n", "worker.memory_limit_mib", "must be positive"),
    ("memory-limit-float", "[worker]\nmemory_limit_mib = 1.5\n", "worker.memory_limit_mib", "expected an integer"),
    ("repeats-negative", "[timing]\nrepeats = -1\n", "timing.repeats", "must be positive"),
    ("unknown-device", "[timing]\ndevices = [\"tpu\"]\n", "timing.devices[0]", "expected one of cpu, cuda"),
]


@pytest.mark.parametrize("case_id,text,field,words", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_profile_toml(tmp_path, capsys, case_id, text, field, words):
    d = make_valid(tmp_path)
    config = tmp_path / "profile.toml"
    config.write_text(text)
    one_line_error(capsys, [str(d), "--config", str(config), "--out", str(tmp_path / "out")], str(config), field, words)
    assert not (d / "RAN").exists()


CLI_CASES = [
    ("timeout-zero", ["--timeout", "0"], "--timeout", "expected a positive number of seconds"),
    ("timeout-not-number", ["--timeout", "soon"], None, "argument --timeout: invalid float value: 'soon'"),
    ("memory-limit-negative", ["--memory-limit", "-5"], "--memory-limit", "expected a positive number of MiB"),
    ("memory-limit-not-int", ["--memory-limit", "2G"], None, "argument --memory-limit: invalid int value: '2G'"),
    ("repeats-zero", ["--repeats", "0"], "--repeats", "must be at least 1"),
    ("rate-not-in-submission", ["--rates", "0.7"], "--rates", "no rate point at 0.7 bpp"),
    ("rates-not-numbers", ["--rates", "low"], "--rates", "expected comma-separated numbers"),
    ("unknown-option", ["--speed", "3"], None, "unrecognized arguments: --speed 3"),
    ("device-unknown", ["--device", "tpu"], None, "argument --device: invalid choice: 'tpu'"),
]


@pytest.mark.parametrize("case_id,args,field,words", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_cli_value(tmp_path, capsys, case_id, args, field, words):
    d = make_valid(tmp_path)
    one_line_error(capsys, [str(d), "--out", str(tmp_path / "out"), *args], "command line", field, words)


def test_out_is_a_file(tmp_path, capsys):
    d = make_valid(tmp_path)
    (tmp_path / "out").write_text("")
    one_line_error(capsys, [str(d), "--out", str(tmp_path / "out")], "command line", "--out", "is not a folder")


def test_subprocess_one_line_and_debug_shows_traceback(tmp_path):
    d = make_valid(tmp_path)
    (d / "submission.toml").write_text(VALID.replace("target_bpp = 0.5", "target_bpp = -1"))
    proc = run_cli(str(d))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"jpegai-profile: error: {d.resolve() / 'submission.toml'}: rates[1].target_bpp: "
        "must be a positive finite number of bpp, got -1.0"]
    assert proc.stdout == ""
    debug = run_cli(str(d), "--debug")
    assert debug.returncode == 2 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("jpegai-profile: error: ")
