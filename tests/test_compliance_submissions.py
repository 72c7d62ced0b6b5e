"""`jpegai-profile check` end to end on fixture submissions: one passes every rule, each other fails
exactly one rule for one reason (tests/codecs/fail_*). Conditions: the rules of profile.toml with the
target rates 0.25, 0.5, 1, 2 bpp and one 192×176 test picture, so a run takes seconds."""

import json

import pytest

from conftest import CODECS, ROOT, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def conditions(tmp_path_factory):
    import skimage.data
    from PIL import Image

    d = tmp_path_factory.mktemp("check")
    (d / "images").mkdir()
    Image.fromarray(skimage.data.astronaut()[100:276, 150:342].copy()).save(d / "images" / "astro.png")
    text = (ROOT / "profile.toml").read_text()
    text = text.replace("target_rates = [0.03, 0.06, 0.12, 0.25, 0.50, 0.75, 1.00, 1.50, 2.00]",
                        "target_rates = [0.25, 0.5, 1.0, 2.0]").replace("resolutions = [[1920, 1080], [3840, 2160]]",
                                                                         "resolutions = []")
    (d / "profile.toml").write_text(text)
    return d


def check(conditions, name, tmp_path):
    proc = run_cli("check", str(CODECS / name), "--config", str(conditions / "profile.toml"),
                   "--images", str(conditions / "images"), "--device", "cpu", "--json", "--out", str(tmp_path))
    assert proc.returncode in (0, 1), proc.stderr
    verdict = json.loads(proc.stdout)
    return proc.returncode, verdict, {r["id"]: r for r in verdict["rules"]}


def failing(rules):
    return sorted(k for k, r in rules.items() if r["status"] == "fail")


def test_rate_controlled_codec_passes_every_rule(conditions, tmp_path):
    rc, verdict, rules = check(conditions, "ratectl", tmp_path)
    assert rc == 0 and verdict["verdict"] == "pass"
    assert rules["runtime.gpu"]["status"] == "not measured"            # this machine has no GPU (--device cpu)
    assert all(r["status"] == "pass" for k, r in rules.items() if k != "runtime.gpu")
    assert "(proxy)" in rules["interop.decode"]["measured"]
    # The profile's report holds the same verdict.
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["compliance"]["verdict"] == "pass"
    assert report["rates"][0]["images"][0]["quality"]["ms_ssim"] is not None


def test_overshoot_fails_only_the_rate_rule(conditions, tmp_path):
    rc, _, rules = check(conditions, "fail_overshoot", tmp_path)
    assert rc == 1 and failing(rules) == ["rates.overshoot"]
    assert "astro at 0.5 bpp" in rules["rates.overshoot"]["measured"]


def test_missing_rate_fails_only_the_rate_points_rule(conditions, tmp_path):
    rc, _, rules = check(conditions, "fail_missing_rate", tmp_path)
    assert rc == 1 and failing(rules) == ["rates.mandatory"]
    assert "target_bpp = 0.25" in rules["rates.mandatory"]["fix"]


def test_false_precision_fails_only_the_precision_rule(conditions, tmp_path):
    rc, _, rules = check(conditions, "fail_precision", tmp_path)
    assert rc == 1 and failing(rules) == ["precision.weights"]
    # The decoder holds the inverse colour transform (9 values) and the entropy model's transposed
    # convolution (8·3·4·4 + 3 = 387 values), all float32 and not integers.
    m = rules["precision.weights"]["measured"]
    assert "decoder declared int8: 3 parameter(s), 396 values" in m and "inverse.weight (float32, 9)" in m


def test_float_entropy_decoding_fails_interoperability(conditions, tmp_path):
    rc, _, rules = check(conditions, "fail_interop", tmp_path)
    assert rc == 1 and set(failing(rules)) <= {"interop.decode", "interop.bdrate"}
    assert "interop.decode" in failing(rules)
    assert "decode to another picture" in rules["interop.decode"]["measured"]
    assert rules["interop.bdrate"]["status"] in ("fail", "not measured")
