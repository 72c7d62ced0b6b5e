"""The trained reference codec (submissions/refnet): rate control on the real test photographs, bitstreams
through files on disk, the integer hyper decoder's exactness, and `check` passing on this CPU-only machine."""

import json
from types import SimpleNamespace

import pytest
import torch

from conftest import ROOT, run_cli

pytest.importorskip("compressai")
REFNET = ROOT / "submissions" / "refnet"
WEIGHTS = REFNET / "weights" / "refnet.safetensors"


@pytest.fixture(scope="module")
def refnet_module():
    # under its own name: the fixture codecs' modules are all called `codec`
    import importlib.util

    spec = importlib.util.spec_from_file_location("refnet_codec", REFNET / "codec.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def state_dict():
    from safetensors.torch import load_file

    return load_file(str(WEIGHTS))


def build(module, state_dict, target):
    rate = SimpleNamespace(target_bpp=target, state_dict=state_dict, weights=WEIGHTS, options={}, index=0)
    return module.build(rate, torch.device("cpu"))


def test_weights_are_committed_and_small():
    assert WEIGHTS.is_file()
    assert WEIGHTS.stat().st_size <= 20 * 2 ** 20


@pytest.mark.parametrize("target", [0.03, 0.25, 2.0])
def test_rate_control_meets_every_target_through_a_file(refnet_module, state_dict, target, tmp_path):
    from profiler.images import load_images
    from profiler.conditions import load_conditions

    images = load_images(load_conditions(None).images)
    assert {i.name for i in images} == {"astronaut", "coffee", "chelsea", "rocket"}
    codec = build(refnet_module, state_dict, target)
    for img in images:
        x = img.tensor("cpu")
        bits = codec.encode(x)
        path = tmp_path / f"{img.name}.bin"
        path.write_bytes(bits)
        bpp = 8 * path.stat().st_size / (img.width * img.height)
        # at most the target (the rule allows +10 %), and close to it: the step ladder is 2^(1/8) apart
        assert 0.7 * target <= bpp <= target, (img.name, bpp)
        x_hat = codec.decode(path.read_bytes())
        assert x_hat.shape == x.shape
        assert torch.equal(x_hat, codec.decode(bits))
        mse = torch.mean((x_hat - x) ** 2).item()
        assert mse < 0.05                       # a picture, not noise (PSNR > 13 dB even at 0.03 bpp)


def test_more_rate_more_quality(refnet_module, state_dict):
    from profiler.images import load_images
    from profiler.conditions import load_conditions

    img = next(i for i in load_images(load_conditions(None).images) if i.name == "chelsea")
    x = img.tensor("cpu")
    mses = [torch.mean((build(refnet_module, state_dict, t).decode(
        build(refnet_module, state_dict, t).encode(x)) - x) ** 2).item() for t in (0.06, 0.5, 2.0)]
    assert mses[0] > mses[1] > mses[2]


def test_integer_hyper_decoder_is_exact(refnet_module, state_dict):
    """Its output is integer × 2^-f and identical whatever the float kernels: oneDNN on or off, 1 or 2
    threads — what the entropy decoder needs on another device."""
    codec = build(refnet_module, state_dict, 0.5)
    hs = codec.model.h_s_int
    torch.manual_seed(0)
    z_hat = torch.round(torch.randn(1, refnet_module.N, 5, 7) * 4)
    out = hs(z_hat)
    fin, wbits, _ = hs._bits
    scaled = out.double() * 2.0 ** (hs._bits[2][-1] + wbits[-1])
    assert torch.equal(scaled, torch.round(scaled))          # integer accumulators, one rounding
    with torch.backends.mkldnn.flags(enabled=False):
        assert torch.equal(hs(z_hat), out)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1 if threads > 1 else 2)
        assert torch.equal(hs(z_hat), out)
    finally:
        torch.set_num_threads(threads)
    # integer weights within int8, held in float32
    for layer in hs.layers:
        w = layer.weight
        assert w.dtype == torch.float32 and torch.equal(w, torch.round(w)) and w.abs().max() <= 128


@pytest.mark.slow
def test_check_passes_on_the_default_conditions(tmp_path):
    """Every JPEG AI target rate within +10 % on every default test image, and every other rule."""
    proc = run_cli("check", str(REFNET), "--device", "cpu", "--json", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    verdict = json.loads(proc.stdout)
    rules = {r["id"]: r for r in verdict["rules"]}
    assert verdict["verdict"] == "pass"
    assert all(r["status"] == "pass" for k, r in rules.items() if k != "runtime.gpu"), rules
    report = json.loads((tmp_path / "report.json").read_text())
    assert [r["target_bpp"] for r in report["rates"]] == [0.03, 0.06, 0.12, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0]
    for r in report["rates"]:
        assert len(r["images"]) == 4
        for img in r["images"]:
            assert img["bpp"] <= r["target_bpp"] * 1.10


# RefNet's parameters by hand (N = 64, M = 128; weights + biases; GDN(C) holds C + C² = 4,160):
#   g_a  = conv(3,64,k5) 4,864 + 2·conv(64,64,k5) 2·102,464 + conv(64,128,k5) 204,928 + 3 GDN 12,480 = 427,200
#   h_a  = conv(128,64,k3) 73,792 + 2·conv(64,64,k5) 204,928                                         = 278,720
#   h_s  = deconv(64,64,k5) 102,464 + deconv(64,96,k5) 153,696 + conv(96,256,k3) 221,440             = 477,600
#   g_s  = deconv(128,64,k5) 204,864 + 2·deconv(64,64,k5) 204,928 + deconv(64,3,k5) 4,803 + 3 IGDN 12,480 = 427,075
#   entropy bottleneck(64): 61 per channel                                                           =   3,904
ENCODER_PARAMS = 427_200 + 278_720 + 477_600 + 3_904
DECODER_PARAMS = 477_600 + 3_904 + 427_075
# Decoder MACs on chelsea (451×300, padded to 512×320; y 20×32, z 5×8):
#   h_s: 40·64·64·25 + 160·64·96·25 + 640·256·96·9                                  = 170,229,760
#   g_s: 640·128·64·25 + 2560·64² (IGDN) + 2560·64·64·25 + 10240·64² + 10240·64·64·25
#        + 40960·64² + 40960·64·3·25                                                 = 1,858,600,960
DECODER_MACS = 170_229_760 + 1_858_600_960


@pytest.mark.slow
def test_quick_profile(tmp_path):
    proc = run_cli(str(REFNET), "--quick", "--device", "cpu", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = json.loads((tmp_path / "report.json").read_text())
    (rate,) = rep["rates"]
    assert rate["target_bpp"] == 0.03 and rate["status"] == "ok"
    assert (rate["params"]["encoder"], rate["params"]["decoder"]) == (ENCODER_PARAMS, DECODER_PARAMS)
    (image,) = rate["images"]
    assert image["name"] == "chelsea" and image["bpp"] <= 0.03
    assert image["counts"]["decoder"]["macs"] == DECODER_MACS
    assert image["counts"]["decoder"]["complete"] is True
    assert rate["weights"]["file"] == "weights/refnet.safetensors"
    # the meta-device count of the networks agrees with the real decode
    assert all(e["method"] == "meta" and e["meta_vs_real"]["agree"] for e in rate["resolutions"])
    assert rate["crosscheck"]["decoder"]["flagged"] is False
