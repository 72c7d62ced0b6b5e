"""Compressed-domain tasks: anchor networks counted against hand counts, the [[tasks]] manifest, and the
three pipelines of profiler/tasks.py on the latent fixture codec (tests/codecs/latent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, run_cli, write_manifest
from profiler import anchors as A
from profiler.conditions import TasksSpec, TestConditions
from profiler.counting import count_call
from profiler.errors import InputError
from profiler.images import TestImage
from profiler.submission import load_entry, load_submission
from profiler.tasks import measure_task, measure_tasks

LATENT = ROOT / "tests" / "codecs" / "latent"


def count(net, x):
    with torch.no_grad():
        return count_call(net, x, roots={"anchor": net})[1]


# -- anchors ------------------------------------------------------------------------------------------

def resnet50_v15_macs(size: int = 224) -> int:
    """ResNet-50 v1.5 by hand, layer by layer: convolutions and the classifier (batch norm, ReLU, pooling
    and the residual additions are element operations, never MACs in the strict convention)."""
    s = size // 2                                   # conv1 7×7 stride 2, 3 → 64
    macs = 3 * 64 * 49 * s * s
    s //= 2                                         # max pool 3×3 stride 2
    c_in = 64
    for blocks, width, stride in ((3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)):
        for i in range(blocks):
            st = stride if i == 0 else 1
            out = s // st
            macs += c_in * width * s * s            # 1×1 reduce (v1.5: stride 1 here …)
            macs += width * width * 9 * out * out   # … and the stride in the 3×3
            macs += width * 4 * width * out * out   # 1×1 expand
            if i == 0:
                macs += c_in * 4 * width * out * out   # projection shortcut (1×1, stride st)
            c_in, s = 4 * width, out
    return macs + 2048 * 1000                       # fc


def test_resnet50_hand_count_is_the_published_figure():
    # 4,087,136,256 in the 53 convolutions + 2,048,000 in the classifier
    assert resnet50_v15_macs(224) == 4_089_184_256


def test_resnet50_anchor_counts_exactly_its_hand_count_at_224():
    net = A.ResNet50Anchor().net.eval()
    c = count(net, torch.rand(1, 3, 224, 224))
    assert c.complete
    assert c.macs == resnet50_v15_macs(224) == 4_089_184_256


def test_resnet50_anchor_preprocessing_crops_224_whatever_the_picture():
    # resize the shorter side to 256, centre crop 224: the same count for a landscape and a portrait picture
    assert A.ResNet50Anchor.preprocess_size(300, 451) == (256, 384)
    assert A.ResNet50Anchor.preprocess_size(451, 300) == (384, 256)
    anchor = A.ResNet50Anchor().eval()
    c = count(anchor, torch.rand(1, 3, 61, 90))
    assert c.macs == 4_089_184_256 and c.complete


def test_wdsr_count_against_its_hand_formula():
    # head 3·32·9 + 16 blocks · 2 · 32·128·9 + tail 32·48·9 + skip 3·48·25 per low-resolution pixel
    per_px = 864 + 16 * 2 * 32 * 128 * 9 + 13_824 + 3_600
    assert per_px == 1_197_936 == A.wdsr_macs_per_input_pixel(**A.WDSR_CONFIG)
    net = A.WDSR(**A.WDSR_CONFIG).eval()
    x = torch.rand(1, 3, 9, 13)
    c = count(net, x)
    assert c.complete and c.macs == per_px * 9 * 13
    with torch.no_grad():
        assert net(x).shape == (1, 3, 36, 52)


def test_lanczos3_is_taps_times_outputs():
    # rows: 6 taps × 3 channels × 9 rows × 52 outputs; columns: 6 taps × 3 × 36 × 52
    x = torch.rand(1, 3, 9, 13)
    c = count(A.Lanczos3(), x)
    assert c.complete
    assert c.macs == 6 * 3 * 9 * 52 + 6 * 3 * 36 * 52 == A.lanczos_macs(3, 9, 13) == 42_120


def test_lanczos3_matches_pil_lanczos():
    from PIL import Image

    rng = np.random.default_rng(0)
    x = rng.random((17, 23)).astype(np.float32)
    ref = np.asarray(Image.fromarray(x, mode="F").resize((92, 68), Image.LANCZOS))
    with torch.no_grad():
        out = A.Lanczos3()(torch.from_numpy(x)[None, None])[0, 0].numpy()
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() < 1e-5


def test_dncnn_count_against_its_hand_formula():
    per_px = 9 * (3 * 64 + 15 * 64 * 64 + 64 * 3)
    assert per_px == 556_416
    c = count(A.DnCNN(**A.DNCNN_CONFIG), torch.rand(1, 3, 8, 10))
    assert c.complete and c.macs == per_px * 80


def test_every_kind_has_an_anchor_that_counts_completely():
    x = torch.rand(1, 3, 32, 48)
    for kind, anchors in A.ANCHORS.items():
        assert anchors, kind
        for a in anchors:
            if a.name in ("resnet50", "wdsr-a-x4"):
                continue                      # counted above
            c = count(a.build().eval(), x)
            assert c.complete and c.macs > 0, (kind, a.name, c.uncounted)


def test_downscale_is_a_quarter_of_the_cropped_picture():
    lr = A.downscale(torch.rand(1, 3, 301, 451))
    assert lr.shape == (1, 3, 75, 112)
    assert float(lr.min()) >= 0 and float(lr.max()) <= 1


# -- the manifest -------------------------------------------------------------------------------------

BASE = (LATENT / "submission.toml").read_text().split("[[tasks]]")[0]


def manifest(tmp_path: Path, tasks: str) -> Path:
    d = tmp_path / "sub"
    d.mkdir()
    for f in ("codec.py", "tasks.py"):
        (d / f).write_text((LATENT / f).read_text())
    return write_manifest(d, BASE + tasks)


@pytest.mark.parametrize("tasks, field, words", [
    ('[[tasks]]\nname = "a"\nkind = "segmentation"\nentry = "tasks:build_task"\n', "tasks[0].kind", "expected one of"),
    ('[[tasks]]\nname = "a"\nkind = "classification"\n', "tasks[0].entry", "missing"),
    ('[[tasks]]\nname = "a"\nkind = "classification"\nentry = "tasks"\n', "tasks[0].entry", "module:callable"),
    ('[[tasks]]\nname = "a"\nkind = "classification"\nentry = "tasks:nope"\n', "tasks[0].entry", "defines no"),
    ('[[tasks]]\nname = "a"\nkind = "classification"\nentry = "heads:build"\n', "tasks[0].entry", "not found"),
    ('[[tasks]]\nname = "a"\nkind = "classification"\nentry = "tasks:build_task"\nwieghts = "w.pt"\n',
     "tasks[0].wieghts", "unknown field"),
    ('[[tasks]]\nname = "a"\nkind = "classification"\nentry = "tasks:build_task"\nweights = "w.pt"\n',
     "tasks[0].weights", "not found"),
    ('[[tasks]]\nname = "a"\nkind = "classification"\nentry = "tasks:build_task"\noptions = 3\n',
     "tasks[0].options", "expected a table"),
    ('[[tasks]]\nname = "a"\nkind = "classification"\nentry = "tasks:build_task"\n'
     '[[tasks]]\nname = "a"\nkind = "denoising"\nentry = "tasks:build_task"\n', "tasks[1].name", "duplicate"),
    ('[tasks]\nname = "a"\n', "tasks", "expected an array"),
    ('[[tasks]]\nkind = "classification"\nentry = "tasks:build_task"\n', "tasks[0].name", "missing"),
])
def test_malformed_tasks_table_names_the_field(tmp_path, tasks, field, words):
    d = manifest(tmp_path, tasks)
    with pytest.raises(InputError) as info:
        load_submission(d)
    msg = str(info.value)
    assert "\n" not in msg and f"submission.toml: {field}: " in msg and words in msg, msg


def test_malformed_tasks_table_is_one_line_and_exit_2(tmp_path):
    d = manifest(tmp_path, '[[tasks]]\nname = "a"\nkind = "classifier"\nentry = "tasks:build_task"\n')
    proc = run_cli(str(d), "--quick", "--device", "cpu", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "tasks[0].kind" in lines[0] and "Traceback" not in proc.stderr


def test_tasks_are_parsed():
    sub = load_submission(LATENT)
    assert [(t.name, t.kind, t.entry) for t in sub.tasks] == [("cls", "classification", "tasks:build_task"),
                                                              ("sr", "super-resolution", "tasks:build_task")]
    assert load_submission(ROOT / "tests" / "codecs" / "tiny").tasks == ()


def test_tasks_conditions_are_checked(tmp_path):
    from profiler.conditions import load_conditions

    p = tmp_path / "profile.toml"
    p.write_text("[tasks]\nimages = 0\n")
    with pytest.raises(InputError, match=r"tasks\.images"):
        load_conditions(p)
    p.write_text("[tasks]\nmeasure = 1\n")
    with pytest.raises(InputError, match=r"tasks\.measure"):
        load_conditions(p)
    p.write_text("[tasks]\nmeasure = false\nrepeats = 2\n")
    assert load_conditions(p).tasks == TasksSpec(measure=False, images=1, repeats=2)


# -- the pipelines ------------------------------------------------------------------------------------

def picture(h: int = 40, w: int = 56) -> TestImage:
    rng = np.random.default_rng(1)
    return TestImage("p", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def latent_setup(cheat: bool = False):
    import dataclasses

    sub = load_submission(LATENT)
    rate = dataclasses.replace(sub.rates[0], options={"synthesis_in_latents": cheat})
    codec = load_entry(sub)(rate, torch.device("cpu"))
    return sub, rate, codec


def test_classification_pipelines_by_hand():
    sub, rate, codec = latent_setup()
    t = measure_task(codec, sub.tasks[0], rate, sub.manifest, [picture()], repeats=1)
    assert t["error"] is None if "error" in t else True
    (p,) = t["pictures"]
    # ŷ: 8 × 10 × 14; head conv 8→16 3×3 (padded) 8·16·9·140 + linear 16·10; decode_latents has no MAC
    assert p["latent"]["macs"] == 8 * 16 * 9 * 140 + 16 * 10 == 161_440
    assert p["latent"]["complete"] and p["synthesis_scopes"] == []
    scopes = set(p["latent"]["count"]["per_module"])
    assert not any(s.startswith("synthesis") or "g_s" in s for s in scopes)
    # decoded anchor: g_s, a transposed conv 8→3 k4 s4 on 10×14 (in · out · k² per input position),
    # then ResNet-50 at 224 (resize + crop); original anchor: ResNet-50 alone
    g_s = 140 * 8 * 3 * 16
    run = p["anchors"]["resnet50"]
    assert run["decoded"]["macs"] == g_s + 4_089_184_256
    assert run["original"]["macs"] == 4_089_184_256
    assert p["output_pixels"] == 40 * 56 and (p["coded_width"], p["coded_height"]) == (56, 40)
    # parameters: the head (8·16·9 + 16 + 16·10 + 10) with the decoder without g_s; the anchor alone
    assert t["params"] == 1152 + 16 + 160 + 10
    assert p["latent"]["params"] == t["params"]
    assert run["original"]["params"] == 25_557_032          # ResNet-50's published parameter count
    assert run["decoded"]["params"] == 25_557_032 + 8 * 3 * 16
    assert p["latent"]["timing"]["cpu"]["n"] == 1
    assert t["not_measured"]["accuracy"]["code"] == "not-available"


def test_the_anchor_on_the_original_is_measured_once_per_profile(tmp_path):
    """The original-anchor pipeline does not depend on the rate: the first rate point measures it, a
    second (with the profile's share folder) takes it, naming the first; its own pipelines stay its own."""
    import dataclasses

    sub, rate, codec = latent_setup()
    other = dataclasses.replace(rate, index=rate.index + 1, target_bpp=rate.target_bpp * 2)
    first = measure_task(codec, sub.tasks[0], rate, sub.manifest, [picture()], repeats=1, share_dir=str(tmp_path))
    second = measure_task(codec, sub.tasks[0], other, sub.manifest, [picture()], repeats=1, share_dir=str(tmp_path))
    a, b = first["pictures"][0]["anchors"]["resnet50"], second["pictures"][0]["anchors"]["resnet50"]
    assert a["original"]["measured_on"] is None
    assert b["original"]["measured_on"] == {"index": rate.index, "target_bpp": rate.target_bpp}
    assert b["original"]["macs"] == a["original"]["macs"] == 4_089_184_256
    assert b["original"]["timing"] == a["original"]["timing"]          # the same measurement, not another
    # The decoded pipeline runs the codec's decode of this rate's bitstream: measured again.
    assert b["decoded"].get("measured_on") is None and b["decoded"]["macs"] == a["decoded"]["macs"]
    # Without a share folder each rate point measures its own.
    third = measure_task(codec, sub.tasks[0], other, sub.manifest, [picture()], repeats=1)
    assert third["pictures"][0]["anchors"]["resnet50"]["original"].get("measured_on") is None


def test_super_resolution_codes_the_quarter_picture_and_divides_by_the_output():
    sub, rate, codec = latent_setup()
    t = measure_task(codec, sub.tasks[1], rate, sub.manifest, [picture()], repeats=1)
    (p,) = t["pictures"]
    # LR picture 10×14, padded to 12×16 → ŷ 3×4; head 1×1 conv 8 → 768 on 12 positions
    assert (p["coded_width"], p["coded_height"]) == (14, 10)
    assert p["output_pixels"] == 40 * 56
    assert p["latent"]["macs"] == 12 * 8 * 768
    wdsr = p["anchors"]["wdsr-a-x4"]
    g_s = 12 * 8 * 3 * 16
    assert wdsr["original"]["macs"] == 1_197_936 * 140
    assert wdsr["decoded"]["macs"] == g_s + 1_197_936 * 140
    lanczos = p["anchors"]["lanczos3-x4"]
    assert lanczos["original"]["macs"] == 6 * 3 * (10 * 56 + 40 * 56)


def test_a_latent_pipeline_that_runs_the_synthesis_is_refused():
    sub, rate, codec = latent_setup(cheat=True)
    t = measure_task(codec, sub.tasks[0], rate, sub.manifest, [picture()], repeats=1)
    assert t["pictures"] == []
    assert t["error"]["stage"] == "decode_latents" and "synthesis" in t["error"]["message"]
    assert "synthesis" in t["error"]["message"].split("(")[1]


def test_a_task_network_that_raises_is_the_tasks_error():
    import dataclasses

    sub, rate, codec = latent_setup()
    task = dataclasses.replace(sub.tasks[0], options={"channels": 3})   # expects 3 channels, ŷ has 8
    t = measure_task(codec, task, rate, sub.manifest, [picture()], repeats=1)
    assert t["pictures"] == [] and t["error"]["kind"] == "submission" and t["error"]["stage"] == "task network"
    assert "RuntimeError" in t["error"]["message"]


def test_a_codec_without_decode_latents_gets_an_error_not_a_figure():
    sub, rate, _ = latent_setup()

    class NoLatents:
        encoder = decoder = torch.nn.Identity()

        def encode(self, x):
            return b""

    t = measure_task(NoLatents(), sub.tasks[0], rate, sub.manifest, [picture()], repeats=1)
    assert t["pictures"] == [] and "decode_latents" in t["error"]["message"]


def test_tasks_can_be_switched_off():
    sub, rate, codec = latent_setup()
    cond = TestConditions(tasks=TasksSpec(measure=False))
    assert measure_tasks(codec, sub, rate, [picture()], cond) == (
        [], {"tasks": ("not-requested", "[tasks] measure = false in the test conditions")})
    plain = load_submission(ROOT / "tests" / "codecs" / "tiny")
    assert measure_tasks(codec, plain, rate, [picture()], TestConditions()) == ([], {})


# -- RefNet's heads -----------------------------------------------------------------------------------

def refnet_tasks():
    import importlib.util

    spec = importlib.util.spec_from_file_location("refnet_tasks", ROOT / "submissions" / "refnet" / "tasks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_refnet_latent_classifier_by_hand():
    mod = refnet_tasks()
    net = mod.LatentClassifier().eval()
    h, w = 20, 32                                   # ŷ of a 320×512 (padded) picture
    c = count(net, torch.rand(1, 128, h, w))
    h2, w2 = 10, 16
    blocks = 2 * (2 * 128 * 128 * 9 * h * w)        # two basic blocks of two 3×3 convs
    down = 128 * 256 * 9 * h2 * w2 + 256 * 256 * 9 * h2 * w2 + 128 * 256 * h2 * w2
    assert c.complete and c.macs == blocks + down + 256 * 1000


def test_refnet_latent_super_resolution_by_hand():
    mod = refnet_tasks()
    net = mod.LatentSuperResolution().eval()
    c = count(net, torch.rand(1, 128, 2, 3))
    chans = (128, 96, 64, 48, 32, 24, 16)
    per = sum(chans[i] * 4 * chans[i + 1] * 9 * 4 ** i for i in range(6)) + 16 * 3 * 9 * 4 ** 6
    assert per == 29_638_656
    assert c.complete and c.macs == per * 6
    with torch.no_grad():
        assert net(torch.rand(1, 128, 2, 3)).shape == (1, 3, 128, 192)


# -- derived figures, renderers, aggregate ------------------------------------------------------------

FIXTURE = ROOT / "tests" / "fixtures" / "report_tasks.json"


def test_task_rows_from_the_fixture_report():
    from profiler import derive
    from profiler.model.io import read_report

    rows = derive.task_rows(read_report(FIXTURE))
    assert [(r.task, r.anchor) for r in rows] == [("cls [a|b]", "resnet50"), ("sr", "wdsr-a-x4"),
                                                  ("sr", "lanczos3-x4"), ("noisy", None)]
    cls, wdsr, lanczos, failed = rows
    # 200×100 = 20,000 output pixels
    assert cls.latent.kmac_px == pytest.approx(1_000_000 / 20_000 / 1000) == pytest.approx(0.05)
    assert cls.decoded.macs == 4_091_184_256 and cls.original.macs == 4_089_184_256
    assert cls.ratio == pytest.approx(1_000_000 / 4_091_184_256)
    assert cls.latent.cpu_s == 0.01 and cls.decoded.cpu_s == 0.5 and cls.latent.peak_mib == 12.5
    assert wdsr.original.kmac_px == pytest.approx(1_497_420_000 / 20_000 / 1000)
    assert not wdsr.latent.complete
    assert lanczos.original.macs == 6 * 3 * (25 * 200 + 100 * 200)
    assert failed.error.endswith("no <b>head</b>") and failed.latent is None


def test_every_renderer_shows_the_tasks_table_and_says_accuracy_was_not_measured():
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from test_golden import rendered

    out = rendered("report_tasks")
    for name in ("console.txt", "table.md", "table.txt", "report.html"):
        text = out[name]
        assert "accuracy was not measured" in text, name
        assert "lanczos3-x4" in text and "wdsr-a-x4" in text and "resnet50" in text, name
    assert "4,091,184,256" in out["table.md"] and "4091184256" in out["table.txt"]
    assert "noisy" in out["table.csv"] and "0.0002444" in out["table.md"]
    import json

    tasks = json.loads(out["table.json"])["tasks"]
    assert tasks["rows"][0]["ratio"] == pytest.approx(1_000_000 / 4_091_184_256)
    # a report without tasks renders no tasks section
    plain = rendered("report_fixnet")
    assert all("ompressed-domain" not in t for t in plain.values())


def test_aggregate_has_a_tasks_table(tmp_path):
    from profiler.aggregation import aggregate, to_html, to_markdown, write_outputs

    df = aggregate([FIXTURE, ROOT / "tests" / "fixtures" / "report_acme.json"])
    rows = df.attrs["tasks"]
    assert len(rows) == 4 and {r["codec"] for r in rows} == {"latent"}
    assert "## Compressed-domain tasks" in to_markdown(df) and "id=tasks" in to_html(df)
    names = [p.name for p in write_outputs(df, tmp_path)]
    assert "aggregate_tasks.csv" in names
    csv_text = (tmp_path / "aggregate_tasks.csv").read_text()
    assert "4091184256" in csv_text and "build_task: ValueError" in csv_text


def test_task_ratio_rule_only_judges_with_a_limit():
    from profiler.compliance import CHECKS
    from profiler.model.report import NotMeasured
    from profiler.model.io import read_report

    report = read_report(FIXTURE)
    rate = report.rates[0]
    only = lambda *names: report.model_copy(update={"rates": [rate.model_copy(update={
        "tasks": [t for t in rate.tasks if t.name in names]})]})
    cond = TestConditions()
    chk = CHECKS["task_ratio"]
    assert chk(only("cls [a|b]"), cond, {"limit": 0.5}).met is True
    f = chk(only("cls [a|b]"), cond, {"limit": 1e-5})
    assert f.met is False and "0.0002444" in f.measured
    assert chk(only("cls [a|b]"), cond, {}).met is True                       # no limit: reported is enough
    assert chk(only("cls [a|b]", "sr"), cond, {"limit": 0.5}).met is None     # sr's latent count is incomplete
    assert chk(report, cond, {}).met is False                                 # the failed task
    assert chk(only(), cond, {}).met is True                                  # no [[tasks]]: nothing to judge
    skipped = only().model_copy(update={"rates": [rate.model_copy(update={"tasks": [], "not_measured": {
        "tasks": NotMeasured(code="not-requested", reason="[tasks] measure = false")}})]})
    assert chk(skipped, cond, {}).met is None
    # the default rule is recommended and has no limit: check records the figures without judging them
    from profiler.conditions import load_conditions

    (rule,) = [r for r in load_conditions().rules if r["check"] == "task_ratio"]
    assert rule["level"] == "recommended" and "limit" not in rule


@pytest.mark.slow
def test_profile_shows_the_tasks_table_and_records_the_figures(tmp_path):
    """`jpegai-profile` on the latent fixture: the tasks table on the console and the figures in report.json."""
    import json

    proc = run_cli(str(LATENT), "--quick", "--device", "cpu", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "compressed-domain tasks" in proc.stdout and "accuracy was not measured" in proc.stdout
    (rate,) = json.loads((tmp_path / "report.json").read_text())["rates"]
    cls, sr = rate["tasks"]
    assert cls["error"] is None and sr["error"] is None
    (p,) = cls["pictures"]
    # chelsea, 451×300, padded to 452×300 → ŷ 8 × 75 × 113: head 8·16·9 per latent position + linear 16·10
    assert (p["width"], p["height"]) == (451, 300)
    assert p["latent"]["macs"] == 8 * 16 * 9 * 75 * 113 + 160
    assert p["anchors"]["resnet50"]["original"]["macs"] == 4_089_184_256
    (q,) = sr["pictures"]
    assert (q["coded_width"], q["coded_height"]) == (112, 75) and q["output_pixels"] == 448 * 300
    md = (tmp_path / "table.md").read_text()
    assert "## Compressed-domain tasks" in md and "lanczos3-x4" in md


def test_the_rate_points_own_bitstream_is_decoded_not_encoded_again():
    """With the counted run's bitstreams, a task that codes the picture itself encodes nothing; the
    super-resolution task codes the quarter picture, so it still encodes (that picture only)."""
    sub, rate, codec = latent_setup()
    pic = picture()
    with torch.no_grad():
        own = bytes(codec.encode(pic.tensor("cpu")))
    calls = []

    class Counting:
        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            return getattr(self._inner, name)

        def encode(self, x):
            calls.append(tuple(x.shape[-2:]))
            return self._inner.encode(x)

    wrapped = Counting(codec)
    given = measure_task(wrapped, sub.tasks[0], rate, sub.manifest, [pic], repeats=1, bitstreams={"p": own})
    assert calls == []
    fresh = measure_task(codec, sub.tasks[0], rate, sub.manifest, [pic], repeats=1)
    g, f = given["pictures"][0], fresh["pictures"][0]
    assert g["bytes"] == len(own) == f["bytes"]
    assert g["latent"]["macs"] == f["latent"]["macs"] == 161_440
    # g_s (transposed conv 8→3 k4 s4 on 10×14) + ResNet-50 at 224, as in the pipelines' test above
    assert g["anchors"]["resnet50"]["decoded"]["macs"] == 140 * 8 * 3 * 16 + 4_089_184_256
    assert g["anchors"]["resnet50"]["decoded"]["macs"] == f["anchors"]["resnet50"]["decoded"]["macs"]
    measure_task(wrapped, sub.tasks[1], rate, sub.manifest, [pic], repeats=1, bitstreams={"p": own})
    assert calls == [(10, 14)]      # the 40×56 picture's quarter, encoded for super-resolution


class _CountingDecodes:
    """The latent codec with its decode() calls counted."""

    def __init__(self, inner, calls: list):
        self._inner, self._calls = inner, calls

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def decode(self, bits):
        self._calls.append(len(bits))
        return self._inner.decode(bits)


def test_the_decoded_anchor_is_composed_of_the_rate_points_decode_and_the_original_anchor():
    """Given the rate point's counted and timed decode of the picture (as the worker passes it), the
    decoded-anchor pipeline runs no decode(): its count is that decode's plus the anchor's on the original
    (hand count: g_s, a transposed conv 8→3 k4 s4 on 10×14, + ResNet-50 at 224), its timing the sum of
    both parts' figures, its peak the larger of the two."""
    from profiler.counting import count_call

    sub, rate, codec = latent_setup()
    pic = picture()
    with torch.no_grad():
        bits = bytes(codec.encode(pic.tensor("cpu")))
        _, count = count_call(lambda: codec.decode(bits), roots={"decoder": codec.decoder}, root_name="decoder")
    stats = {"n": 3, "median_s": 0.25, "min_s": 0.2, "max_s": 0.5, "q1_s": 0.22, "q3_s": 0.3, "iqr_s": 0.08,
             "values_s": [0.2, 0.25, 0.5], "ms_per_mpx": 1.0}
    given = {"p": {"count": count.to_dict(), "timing": {"cpu": stats}, "memory": {"cpu": {"above_baseline_mib": 1e6}}}}
    calls: list = []
    t = measure_task(_CountingDecodes(codec, calls), sub.tasks[0], rate, sub.manifest, [pic], repeats=1,
                     bitstreams={"p": bits}, decodes=given)
    assert calls == []                       # the latent pipeline calls decode_latents, the anchor no decode
    (p,) = t["pictures"]
    run = p["anchors"]["resnet50"]
    dec, org = run["decoded"], run["original"]
    assert dec["composed_of"] == {"decode": "rate point", "anchor": "original"} and p["decode"] is None
    assert dec["macs"] == 140 * 8 * 3 * 16 + 4_089_184_256 and dec["complete"]
    assert dec["count"]["per_module"]["decoder.g_s"]["macs"] == 140 * 8 * 3 * 16
    assert dec["params"] == 25_557_032 + 8 * 3 * 16
    o = org["timing"]["cpu"]
    assert dec["timing"]["cpu"]["median_s"] == 0.25 + o["median_s"]
    assert dec["timing"]["cpu"]["max_s"] == 0.5 + o["max_s"] and dec["timing"]["cpu"]["n"] == 1
    assert dec["memory"]["cpu"]["above_baseline_mib"] == 1e6


def test_super_resolution_decodes_its_quarter_picture_once_for_both_anchors():
    """The quarter picture's bitstream is no rate point's: its decode is counted and timed in the task
    (count + 1 repeat: two calls), kept as the picture's `decode`, and each anchor's decoded pipeline is
    that decode plus the anchor on the low-resolution original (hand counts as above)."""
    sub, rate, codec = latent_setup()
    calls: list = []
    t = measure_task(_CountingDecodes(codec, calls), sub.tasks[1], rate, sub.manifest, [picture()], repeats=1)
    assert len(calls) == 2
    (p,) = t["pictures"]
    g_s = 12 * 8 * 3 * 16
    assert p["decode"]["macs"] == g_s
    for name, anchor_macs in (("wdsr-a-x4", 1_197_936 * 140), ("lanczos3-x4", 6 * 3 * (10 * 56 + 40 * 56))):
        run = p["anchors"][name]
        assert run["decoded"]["composed_of"] == {"decode": "task", "anchor": "original"}
        assert run["decoded"]["macs"] == g_s + anchor_macs == p["decode"]["macs"] + run["original"]["macs"]
        assert run["decoded"]["timing"]["cpu"]["median_s"] == \
            p["decode"]["timing"]["cpu"]["median_s"] + run["original"]["timing"]["cpu"]["median_s"]
