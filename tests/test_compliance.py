"""The rules engine over hand-built reports: each rule passes on a good report and fails for its reason.

Reports are built by hand (no measuring), so every figure the rules see is known.
"""

import copy
import json
from pathlib import Path

import pytest

from profiler.compliance import CHECKS, assess, validate_rules
from profiler.conditions import load_conditions
from profiler.errors import InputError
from profiler.model.io import to_json
from profiler.model.report import Report

from conftest import ROOT, run_cli

TARGETS = (0.25, 0.5, 1.0, 2.0)
COND = __import__("dataclasses").replace(load_conditions(ROOT / "profile.toml"), target_rates=TARGETS)


def _timing(s):
    return {"n": 1, "median_s": s, "min_s": s, "max_s": s, "q1_s": s, "q3_s": s, "iqr_s": 0.0, "values_s": [s]}


def _count(macs):
    return {"macs": macs, "complete": True, "uncounted": {}}


def _interop_entry(name, bpp, psnr_a, psnr_b=None, diff8=0, ms=None):
    psnr_b = psnr_a if psnr_b is None else psnr_b
    ms = ms if ms is not None else psnr_a / 40
    return {"name": name, "width": 100, "height": 100, "bytes": int(bpp * 10000 / 8), "bpp": bpp,
            "a": {"psnr_rgb": psnr_a, "psnr_y": psnr_a, "ms_ssim": ms},
            "b": {"psnr_rgb": psnr_b, "psnr_y": psnr_b, "ms_ssim": ms - (psnr_a - psnr_b) / 40},
            "max_abs_diff": diff8 / 255, "max_abs_diff_8bit": diff8, "psnr_drop_db": psnr_a - psnr_b}


def good_data() -> dict:
    """Four rate points, one 100×100 image each, 0.9 × target, everything measured, identical interop
    (as a dict: a test changes what it needs, then `report(d)` makes the frozen Report)."""
    rates = []
    for i, t in enumerate(TARGETS):
        bpp = 0.9 * t
        img = dict(name="img", width=100, height=100, bytes=int(bpp * 10000 / 8), bpp=bpp,
                   psnr_rgb=28 + 3 * i,
                   counts={"encoder": _count(2_000_000), "decoder": _count(1_000_000 + i)},
                   timing={"cpu": {"encode": _timing(0.2), "decode": _timing(0.1)}}, memory={})
        params = {"encoder": 100, "decoder": 80, "model": 150, "buffers_decoder": 0,
                  "dtypes": {"encoder": {"float32": 100}, "decoder": {"float32": 80}}, "fingerprints": {f"w{i}": 150}}
        rates.append(dict(index=i, target_bpp=t, params=params, images=[img],
                          precision={"declared": {"encoder": "float32", "decoder": "float32"},
                                     "offending": {"encoder": {"count": 0, "numel": 0, "parameters": []},
                                                   "decoder": {"count": 0, "numel": 0, "parameters": []}}},
                          not_measured={"gpu": {"code": "no-device", "reason": "no CUDA device"}},
                          interop={"pair": "cpu→cpu (oneDNN off)", "proxy": True, "note": "",
                                   "images": [_interop_entry("img", bpp, 28 + 3 * i)]}))
    return {"submission": {"directory": "/x", "proponent": "P", "codec": "c", "version": "1", "entry": "codec:build",
                           "precision": {"encoder": "float32", "decoder": "float32"},
                           "rates": [{"index": i, "target_bpp": t} for i, t in enumerate(TARGETS)]},
            "conditions": COND.to_dict(), "rates": rates, "schema_version": "2.0", "tool": {"version": "0"},
            "created": "2026-01-01T00:00:00+00:00", "run": {"state": "complete", "planned_rates": list(TARGETS)}}


def report(d: dict) -> Report:
    return Report.model_validate(d)


def good_report() -> Report:
    return report(good_data())


def statuses(report: Report) -> dict:
    return {r.id: r.status for r in assess(report, COND).rules}


def only_failing(report: Report) -> list[str]:
    return sorted(k for k, v in statuses(report).items() if v == "fail")


def test_every_rule_of_profile_toml_is_a_known_check():
    rules = load_conditions(ROOT / "profile.toml").rules
    validate_rules(rules, "profile.toml")
    assert {r["check"] for r in rules} == set(CHECKS)


def test_good_report_passes_every_mandatory_rule():
    v = assess(good_report(), COND)
    st = {r.id: r.status for r in v.rules}
    assert v.verdict == "pass" and v.passed
    assert st.pop("runtime.gpu") == "not measured"           # recommended, no CUDA device
    assert set(st.values()) == {"pass"}
    gpu = next(r for r in v.rules if r.id == "runtime.gpu")
    assert gpu.level == "recommended" and "no CUDA device" in gpu.measured
    params = next(r for r in v.rules if r.id == "params.reported")
    # Largest model 150; total over rate points: four distinct fingerprints of 150 = 600.
    assert "largest model 150" in params.measured and "total 600" in params.measured
    kmac = next(r for r in v.rules if r.id == "kmac.decoder")
    # Worst decoder: 1 000 003 MACs / (100 × 100) / 1000 = 0.1000003 kMAC/px.
    assert kmac.measured.startswith("0.10 kMAC/px")


def test_missing_mandatory_rate_fails_and_names_it():
    d = good_data()
    d["submission"]["rates"] = [r for r in d["submission"]["rates"] if r["target_bpp"] != 0.25]
    d["rates"] = [r for r in d["rates"] if r["target_bpp"] != 0.25]
    d["run"]["planned_rates"] = [0.5, 1.0, 2.0]
    rep = report(d)
    assert only_failing(rep) == ["rates.mandatory"]
    r = next(r for r in assess(rep, COND).rules if r.id == "rates.mandatory")
    assert "3 of 4" in r.measured and "target_bpp = 0.25" in r.fix


def test_failed_rate_point_fails_rates_mandatory():
    d = good_data()
    d["rates"][1] = {"index": 1, "target_bpp": 0.5, "status": "failed",
                     "error": {"kind": "submission", "stage": "decode", "message": "decode: boom"}}
    rep = report(d)
    r = next(r for r in assess(rep, COND).rules if r.id == "rates.mandatory")
    assert r.status == "fail" and "boom" in r.measured


def test_rate_overshoot_reports_the_worst_image():
    d = good_data()
    # 0.5 × 1.10 = 0.55 is the limit: 0.56 fails, and is the worst (+12 %).
    d["rates"][1]["images"][0]["bpp"] = 0.56
    rep = report(d)
    assert only_failing(rep) == ["rates.overshoot"]
    r = next(r for r in assess(rep, COND).rules if r.id == "rates.overshoot")
    assert "img at 0.5 bpp: 0.5600 bpp (+12.0 %)" in r.measured and "0.5 bpp" in r.fix
    assert "random initialisation" not in r.fix
    d["rates"][1]["weights"] = {"file": None, "sha256": None, "source": "random initialisation (no trained weights)"}
    rep = report(d)
    r = next(r for r in assess(rep, COND).rules if r.id == "rates.overshoot")
    assert "the weights of 0.5 bpp are a random initialisation: train the model" in r.fix
    d["rates"][1]["images"][0]["bpp"] = 0.55              # exactly at the limit passes
    assert statuses(report(d))["rates.overshoot"] == "pass"


def test_unknown_declared_precision_fails():
    d = good_data()
    d["submission"]["precision"]["decoder"] = "int"         # no N
    assert "precision.declared" in only_failing(report(d))


def test_precision_weights_names_the_offending_parameters():
    d = good_data()
    for r in d["rates"]:
        r["precision"]["offending"]["decoder"] = {"count": 1, "numel": 64, "parameters": [
            {"name": "g_s.0.weight", "dtype": "float32", "numel": 64, "reason": "float32 with values that are not int8 integers"}]}
    d["submission"]["precision"]["decoder"] = "int8"
    rep = report(d)
    assert only_failing(rep) == ["precision.weights"]
    r = next(r for r in assess(rep, COND).rules if r.id == "precision.weights")
    assert "g_s.0.weight (float32, 64)" in r.measured and "declared int8" in r.measured and "float32" in r.fix


def test_cpu_runtime_missing_fails():
    d = good_data()
    del d["rates"][2]["images"][0]["timing"]["cpu"]
    assert only_failing(report(d)) == ["runtime.cpu"]


def test_gpu_runtime_recommended_warns_when_not_met():
    d = good_data()
    for r in d["rates"]:
        r["not_measured"] = {}
        r["images"][0]["timing"]["cuda"] = {"encode": _timing(0.01), "decode": _timing(0.01)}
    assert statuses(report(d))["runtime.gpu"] == "pass"
    del d["rates"][0]["images"][0]["timing"]["cuda"]       # a GPU was there but 0.25 bpp was not timed
    st = statuses(report(d))
    assert st["runtime.gpu"] == "warn" and assess(report(d), COND).verdict == "pass"


def test_gpu_runtime_is_not_measured_by_code_not_by_message():
    # The reason text says nothing about CUDA; its code says the machine has no device: not measured.
    d = good_data()
    for r in d["rates"]:
        r["not_measured"] = {"gpu": {"code": "no-device", "reason": "absent"}}
    assert statuses(report(d))["runtime.gpu"] == "not measured"
    # A GPU phase that failed is a failure of the rule (warn: it is recommended), whatever its text says.
    d["rates"][0]["not_measured"] = {"gpu": {"code": "failed", "reason": "no CUDA device (driver crashed)"}}
    assert statuses(report(d))["runtime.gpu"] == "warn"


def test_params_and_kmac_not_reported_are_not_measured_and_limits_apply():
    d = good_data()
    for r in d["rates"]:        # no rate point reported its parameters
        r["params"] = None
    st = statuses(report(d))
    assert st["params.reported"] == "not measured" and st["kmac.decoder"] == "pass"
    assert assess(report(d), COND).verdict == "incomplete"
    # A resolution the decoder could not be counted at (out of memory at 1920×1080, say) leaves the worst
    # case unknown: not measured, never a pass on the test pictures' figure.
    d = good_data()
    d["rates"][0]["resolutions"] = [{"width": 1920, "height": 1080, "method": "not counted", "seconds": 0.0,
                                     "note": "real encode()/decode() failed: OutOfMemoryError"}]
    kmac = next(r for r in assess(report(d), COND).rules if r.id == "kmac.decoder")
    assert kmac.status == "not measured" and "1920×1080" in kmac.measured and "OutOfMemoryError" in kmac.measured
    assert assess(report(d), COND).verdict == "incomplete"
    # A count with an op that has no formula is a lower bound, said so: not measured.
    d = good_data()
    d["rates"][3]["images"][0]["counts"]["decoder"] = {"macs": 1_000_003, "complete": False,
                                                        "uncounted": {"aten::fft_rfft2": 2}}
    kmac = next(r for r in assess(report(d), COND).rules if r.id == "kmac.decoder")
    assert kmac.status == "not measured" and "≥ 0.10 kMAC/px" in kmac.measured and "aten::fft_rfft2" in kmac.measured
    cond = __import__("dataclasses").replace(COND, rules=(
        {"id": "p", "check": "params_reported", "limit": 149},
        {"id": "k", "check": "decoder_kmac_reported", "limit": 0.1}))
    v = assess(good_report(), cond)
    assert [r.status for r in v.rules] == ["fail", "fail"]  # 150 > 149; 0.1000003 > 0.1


def test_interop_decode_failure_and_picture_difference():
    d = good_data()
    d["rates"][3]["interop"]["images"][0] = {"name": "img", "width": 100, "height": 100, "bytes": 1, "bpp": 1.8,
                                             "a": {"psnr_rgb": 37.0}, "decode_error_b": "ValueError: bad stream"}
    assert "interop.decode" in only_failing(report(d))
    d = good_data()
    d["rates"][2]["interop"]["images"][0] = _interop_entry("img", 0.9, 34.0, psnr_b=30.0, diff8=40)
    rep = report(d)
    r = next(r for r in assess(rep, COND).rules if r.id == "interop.decode")
    assert r.status == "fail" and "PSNR 34.00 → 30.00 dB (drop 4.00 dB, max diff 40)" in r.measured
    assert "(proxy)" in r.measured


def _shift_b(db: float) -> Report:
    d = good_data()
    for r in d["rates"]:
        e = r["interop"]["images"][0]
        r["interop"]["images"][0] = _interop_entry("img", e["bpp"], e["a"]["psnr_rgb"], e["a"]["psnr_rgb"] - db, diff8=1)
    return report(d)


def test_interop_bdrate_by_hand():
    # A-curve: PSNR 28, 31, 34, 37 dB at 0.225, 0.45, 0.9, 1.8 bpp: log10(rate) is linear in PSNR with slope
    # log10(2) / 3 per dB (pchip of collinear points is that line). A B-curve Δ dB lower at every rate
    # needs the rate of Δ dB higher on A: BD-rate = (2^(Δ/3) − 1) × 100. MS-SSIM moves alike (Δ/40).
    rep = _shift_b(0.02)                                      # (2^(0.02/3) − 1) × 100 = 0.4632 %
    r = next(r for r in assess(rep, COND).rules if r.id == "interop.bdrate")
    assert r.status == "pass" and only_failing(rep) == []
    assert {x["metric"]: round(x["bd_rate_percent"], 4) for x in r.details["bd_rates"]} == \
        {"psnr_rgb": round((2 ** (0.02 / 3) - 1) * 100, 4), "ms_ssim": round((2 ** (0.02 / 3) - 1) * 100, 4),
         "psnr_y": round((2 ** (0.02 / 3) - 1) * 100, 4)}      # every metric the entries hold (profile.toml)
    rep = _shift_b(0.05)                                      # (2^(0.05/3) − 1) × 100 = 1.1619 % ≥ 0.5 %
    assert only_failing(rep) == ["interop.bdrate"]
    r = next(r for r in assess(rep, COND).rules if r.id == "interop.bdrate")
    assert f"{(2 ** (0.05 / 3) - 1) * 100:+.3f} %" in r.measured and r.fix


def test_interop_bdrate_with_fewer_than_four_rate_points_is_not_measured():
    d = good_data()
    d["rates"] = d["rates"][:3]
    d["submission"]["rates"] = d["submission"]["rates"][:3]
    d["run"]["planned_rates"] = list(TARGETS[:3])
    rep = report(d)
    cond = __import__("dataclasses").replace(COND, target_rates=TARGETS[:3])
    r = next(r for r in assess(rep, cond).rules if r.id == "interop.bdrate")
    assert r.status == "not measured" and "at least 4 rate points" in r.measured


def test_an_unfinished_run_is_incomplete_never_pass():
    d = good_data()
    d["run"] = {"state": "running", "planned_rates": list(TARGETS) + [3.0]}
    v = assess(report(d), COND)
    assert all(r.status != "fail" for r in v.rules if r.level == "mandatory")
    assert v.verdict == "incomplete" and not v.passed


def test_bad_rules_are_input_errors(tmp_path):
    with pytest.raises(InputError, match=r"rules\[0\]\.check"):
        validate_rules(({"id": "x", "check": "nope"},), "p.toml")
    with pytest.raises(InputError, match=r"rules\[1\]\.id"):
        validate_rules(({"id": "x", "check": "runtime"}, {"id": "x", "check": "runtime"}), "p.toml")
    with pytest.raises(InputError, match=r"rules\[0\]\.level"):
        validate_rules(({"id": "x", "check": "runtime", "level": "optional"},), "p.toml")


# -- the command: exit codes 0 / 1 / 2, text and JSON -------------------------------------------------

def _write(tmp_path: Path, rep: Report) -> Path:
    path = tmp_path / "report.json"
    path.write_text(to_json(rep))
    return path


def _config(tmp_path: Path) -> Path:
    text = (ROOT / "profile.toml").read_text()
    text = text.replace("target_rates = [0.03, 0.06, 0.12, 0.25, 0.50, 0.75, 1.00, 1.50, 2.00]",
                        "target_rates = [0.25, 0.5, 1.0, 2.0]")
    p = tmp_path / "profile.toml"
    p.write_text(text)
    return p


def test_check_exit_0_on_a_passing_report(tmp_path):
    proc = run_cli("check", "--report", str(_write(tmp_path, good_report())), "--config", str(_config(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 12 and lines[-1].startswith("verdict: PASS")
    assert any(l.startswith("runtime.gpu") and "NOT MEASURED" in l and "no CUDA device" in l for l in lines)


def test_check_exit_1_and_json_on_a_failing_report(tmp_path):
    d = good_data()
    d["rates"][1]["images"][0]["bpp"] = 0.9
    rep = report(d)
    proc = run_cli("check", "--report", str(_write(tmp_path, rep)), "--config", str(_config(tmp_path)), "--json")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["verdict"] == "fail"
    bad = [r for r in data["rules"] if r["status"] == "fail"]
    assert [r["id"] for r in bad] == ["rates.overshoot"] and bad[0]["fix"]


def test_check_exit_2_on_bad_input(tmp_path):
    proc = run_cli("check", str(tmp_path / "missing"))
    assert proc.returncode == 2 and "submission directory not found" in proc.stderr
    assert "Traceback" not in proc.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "submission.toml").write_text("[submission\n")
    proc = run_cli("check", str(tmp_path / "bad"))
    assert proc.returncode == 2 and "submission.toml" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    cfg = _config(tmp_path)
    cfg.write_text(cfg.read_text().replace('check = "rate_overshoot"', 'check = "rate_overshot"'))
    proc = run_cli("check", "--report", str(_write(tmp_path, good_report())), "--config", str(cfg))
    assert proc.returncode == 2 and "rules[1].check" in proc.stderr and "Traceback" not in proc.stderr
