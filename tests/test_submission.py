"""submission.toml: a valid manifest loads; each malformed field gives one line naming file and field."""

from pathlib import Path

import pytest

from profiler.errors import InputError
from profiler.submission import load_submission

from conftest import VALID_MANIFEST, run_cli, write_manifest

VALID = VALID_MANIFEST


def make_valid(tmp_path: Path) -> Path:
    from safetensors.torch import save_file
    import torch

    d = write_manifest(tmp_path / "acme", VALID)
    (d / "codec.py").write_text("def build(rate, device):\n    raise NotImplementedError\n")
    (d / "weights").mkdir()
    save_file({"w": torch.zeros(2)}, str(d / "weights" / "r006.safetensors"))
    return d


def test_valid_manifest_loads(tmp_path):
    d = make_valid(tmp_path)
    sub = load_submission(d)
    assert sub.proponent == "Acme Labs" and sub.codec == "AcmeNet" and sub.version == "1.0"
    assert sub.entry_module == "codec" and sub.entry_callable == "build"
    assert sub.precision == {"encoder": "float32", "decoder": "int8"}
    assert [r.target_bpp for r in sub.rates] == [0.06, 0.5]
    assert sub.rates[0].weights == (d / "weights" / "r006.safetensors").resolve()
    assert sub.rates[0].options == {"quality": 1}
    assert sub.rates[1].weights is None and sub.rates[1].options == {}


# (description, text edit applied to VALID, field expected in the message)
BAD = [
    ("missing proponent", lambda t: t.replace('proponent = "Acme Labs"\n', ""), "submission.proponent"),
    ("empty proponent", lambda t: t.replace('"Acme Labs"', '"  "'), "submission.proponent"),
    ("proponent not a string", lambda t: t.replace('"Acme Labs"', "42"), "submission.proponent"),
    ("missing entry", lambda t: t.replace('entry = "codec:build"\n', ""), "submission.entry"),
    ("entry without callable", lambda t: t.replace('"codec:build"', '"codec"'), "submission.entry"),
    ("entry module missing", lambda t: t.replace('"codec:build"', '"nowhere:build"'), "submission.entry"),
    ("missing precision table", lambda t: t.replace("[precision]", "[precisionx]"), "precision"),
    ("unknown precision", lambda t: t.replace('decoder = "int8"', 'decoder = "int"'), "precision.decoder"),
    ("precision not a string", lambda t: t.replace('decoder = "int8"', "decoder = 8"), "precision.decoder"),
    ("no rates", lambda t: t.split("[[rates]]")[0], "rates"),
    ("rate not a number", lambda t: t.replace("target_bpp = 0.5", 'target_bpp = "0.5"'), "rates[1].target_bpp"),
    ("negative rate", lambda t: t.replace("target_bpp = 0.5", "target_bpp = -0.5"), "rates[1].target_bpp"),
    ("duplicate rate", lambda t: t.replace("target_bpp = 0.5", "target_bpp = 0.06"), "rates[1].target_bpp"),
    ("weights missing", lambda t: t.replace("r006.safetensors", "nope.safetensors"), "rates[0].weights"),
    ("weights escape", lambda t: t.replace('"weights/r006.safetensors"', '"../../etc/passwd"'), "rates[0].weights"),
    ("options not a table", lambda t: t.replace("options = { quality = 1 }", "options = 3"), "rates[0].options"),
    ("not TOML", lambda t: t + "\n[[rates\n", "submission.toml"),
]


@pytest.mark.parametrize("desc,edit,field", BAD, ids=[b[0] for b in BAD])
def test_malformed_manifest_names_file_and_field(tmp_path, desc, edit, field):
    d = make_valid(tmp_path)
    manifest = d / "submission.toml"
    manifest.write_text(edit(VALID))
    with pytest.raises(InputError) as info:
        load_submission(d)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(manifest) in msg
    assert field in msg


def test_cli_bad_manifest_is_one_line_exit_2(tmp_path):
    d = make_valid(tmp_path)
    (d / "submission.toml").write_text(VALID.replace('decoder = "int8"', 'decoder = "int"'))
    proc = run_cli(str(d))
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "precision.decoder" in lines[0] and "submission.toml" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_cli_missing_directory_exit_2(tmp_path):
    proc = run_cli(str(tmp_path / "nope"))
    assert proc.returncode == 2 and "submission directory not found" in proc.stderr
