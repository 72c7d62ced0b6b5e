"""Counting at any resolution on the meta device, against hand-computed MACs and against real tensors."""

import resource

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from profiler.adapters.compressai import build as build_compressai

from profiler.counting import count_call
from profiler.counting.meta import count_at, count_networks, meta_copy
from profiler.counting.resolutions import count_resolutions
from profiler import derive
from profiler.model.report import RateResult
from profiler.submission import load_entry, load_submission

from conftest import NetworksCodec, minimal_report


class _Rate:
    def __init__(self, arch, quality=1):
        self.options = {"arch": arch, "quality": quality}
        self.state_dict = None
        self.weights = None
        self.index = 0


# bmshj2018-hyperprior quality 1 (N=128, M=192), 64×64 image: y is 4×4, z is 1×1.
# h_s: deconv N→N k5 s2 on 1×1, deconv N→N k5 s2 on 2×2 (both over input positions), conv N→M k3 on 4×4.
H_S = 1 * 128 * 128 * 25 + 4 * 128 * 128 * 25 + 16 * 192 * 128 * 9
# g_s: deconv M→N on 4², IGDN on 8² (1×1 conv N→N), deconv N→N on 8², IGDN 16², deconv on 16², IGDN 32²,
# deconv N→3 on 32².
G_S = (16 * 192 * 128 * 25 + 64 * 128 * 128 + 64 * 128 * 128 * 25 + 256 * 128 * 128
       + 256 * 128 * 128 * 25 + 1024 * 128 * 128 + 1024 * 128 * 3 * 25)
# g_a: conv 3→N k5 s2 to 32², GDN, conv N→N to 16², GDN, to 8², GDN, conv N→M to 4²; h_a: conv M→N k3 on 4²,
# conv N→N k5 s2 to 2², conv N→N k5 s2 to 1².
G_A = (1024 * 128 * 3 * 25 + 1024 * 128 * 128 + 256 * 128 * 128 * 25 + 256 * 128 * 128
       + 64 * 128 * 128 * 25 + 64 * 128 * 128 + 16 * 192 * 128 * 25)
H_A = 16 * 128 * 192 * 9 + 4 * 128 * 128 * 25 + 1 * 128 * 128 * 25


@pytest.fixture(scope="module")
def hyperprior():
    return build_compressai(_Rate("bmshj2018-hyperprior"))


def test_meta_networks_match_hand_count_and_real_calls(hyperprior):
    twin = meta_copy(hyperprior)
    enc, dec = count_networks(twin, 64, 64, "meta")
    assert dec.macs == H_S + G_S == 178_339_840
    assert enc.macs == G_A + H_A + H_S
    assert dec.per_module["decoder.g_s.4"].macs == 256 * 128 * 128 * 25
    # the same networks on real tensors, and the real compress()/decompress() with rANS: identical
    enc_r, dec_r = count_networks(hyperprior, 64, 64, "cpu")
    assert (enc_r.macs, dec_r.macs) == (enc.macs, dec.macs)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        bits, enc_call = count_call(hyperprior.encode, x, roots={"encoder": hyperprior.encoder}, root_name="encoder")
        _, dec_call = count_call(hyperprior.decode, bits, roots={"decoder": hyperprior.decoder}, root_name="decoder")
    assert enc_call.macs == enc.macs and dec_call.macs == dec.macs
    # the real codec was not moved to meta
    assert next(hyperprior.model.parameters()).device.type == "cpu"


def test_3840x2160_on_meta_allocates_no_activation(hyperprior):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    e = count_at(hyperprior, 3840, 2160, meta_copy(hyperprior))
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert e["method"] == "meta"
    # padded to 3840×2176 = 2040 blocks of 64×64, every layer scales with area
    assert e["decoder"]["macs"] == 2040 * 178_339_840
    res = RateResult(index=0, target_bpp=0.03, resolutions=[e]).resolutions[0]
    assert derive.resolution_kmac(res, "decoder") == 2040 * 178_339_840 / (3840 * 2160) / 1000   # per original pixel
    top = max((k for k in res.decoder.per_module), key=lambda k: res.decoder.per_module[k].macs)
    assert res.decoder.complete and top == "decoder.g_s.4"
    assert grown_mib < 300      # real tensors: several GB (complexity-facts.md §4)


def _real_decode_macs(codec, size: int = 64) -> int:
    """MACs of the codec's real decode() (rANS included) of a noise picture's bitstream."""
    with torch.no_grad():
        bits = codec.encode(torch.rand(1, 3, size, size))
        _, dec_call = count_call(codec.decode, bits, roots={"decoder": codec.decoder}, root_name="decoder")
    return dec_call.macs


def test_autoregressive_meta_equals_serial_decode():
    codec = build_compressai(_Rate("mbt2018"))
    _, dec = count_networks(meta_copy(codec), 64, 64, "meta")
    # the per-position F.conv2d loop of decompress() adds up to the dense context model exactly
    assert dec.macs == _real_decode_macs(codec)
    ctx_dense = 4 * 4 * 384 * 192 * 25          # MaskedConv2d M→2M k5 at 16 latent positions (M=192)
    assert dec.per_module["decoder.context_prediction"].macs == ctx_dense


def test_checkerboard_meta_equals_two_pass_decode_and_fvcore():
    """Cheng 2020 with the checkerboard context keeps its networks in CompressAI latent codecs, nested two
    deep; each decode pass runs the 5×5 context convolution over the whole latent (N → 2N) and the 1×1
    entropy parameters (4N → 10N/3 → 8N/3 → 2N) over half of it."""
    from profiler.counting.crosscheck import part_inputs, run_fvcore

    codec = build_compressai(_Rate("cheng2020-anchor-checkerboard"))
    _, dec = count_networks(meta_copy(codec), 64, 64, "meta")
    assert dec.macs == _real_decode_macs(codec)
    n, positions = 128, 4 * 4                   # quality 1: N = 128; y is 4×4 at 64×64
    ctx = 2 * positions * (2 * n) * n * 25      # two passes over the whole latent
    params = positions * (4 * n * (10 * n // 3) + (10 * n // 3) * (8 * n // 3) + (8 * n // 3) * 2 * n)
    assert dec.per_module["decoder.latent_codec__y.context_prediction"].macs == ctx
    assert sum(c.macs for k, c in dec.per_module.items()
               if k.startswith("decoder.latent_codec__y.entropy_parameters")) == params
    # fvcore can trace the nested part (no '/' in module names: fvcore splits jit scopes on it)
    parts, _ = part_inputs(codec, 64, 64)
    wrapper, leaves = parts["decoder"]
    total, _, _ = run_fvcore(wrapper, leaves)
    assert total == dec.macs


class _NeedsValues(nn.Module):
    def forward(self, x):
        scale = float(x.abs().max().item()) + 1.0           # data-dependent: impossible on meta
        return F.avg_pool2d(x, 2) / scale


class _ValueCodec(NetworksCodec):
    """encode_networks reads a value: the meta path fails and the real networks are counted."""

    def __init__(self):
        self.encoder = nn.Sequential(nn.Conv2d(3, 2, 1), _NeedsValues())
        self.decoder = nn.Sequential(nn.Conv2d(2, 3, 1))


def test_meta_failure_says_why_and_falls_back():
    codec = _ValueCodec()
    e = count_at(codec, 8, 6, meta_copy(codec))
    assert e["method"] == "real tensors (networks)"
    assert "meta device failed" in e["note"] and "item" in e["note"].lower()
    assert e["encoder"]["macs"] == 8 * 6 * 2 * 3            # 1×1 conv 3→2
    assert e["decoder"]["macs"] == 4 * 3 * 3 * 2            # 1×1 conv 2→3 on the pooled 4×3


def test_codec_without_networks_counts_real_calls(tiny_dir):
    sub = load_submission(tiny_dir)
    codec = load_entry(sub)(sub.rates[0], torch.device("cpu"))
    e = count_at(codec, 48, 34, None)
    assert e["method"] == "real encode()/decode() of a noise image"
    assert "no encode_networks" in e["note"]
    # tests/test_kmac.py's formulas at 48×34 (no padding): latent 17×24
    assert e["encoder"]["macs"] == 17 * 24 * 4 * 3 * 9 + 17 * 24 * 4 * 4
    assert e["decoder"]["macs"] == 17 * 24 * 4 * 4 + 17 * 24 * 4 * 3 * 16 + 34 * 48 * 3 * 3 * 9


def test_worst_case_over_resolutions_names_its_source(hyperprior):
    entries, missing = count_resolutions(hyperprior, ((1920, 1080), (3840, 2160)), [])
    assert [(e["width"], e["height"], e["method"]) for e in entries] == [(1920, 1080, "meta"), (3840, 2160, "meta")]
    assert missing == {}
    rep = minimal_report([RateResult(index=0, target_bpp=0.03, resolutions=entries)])
    worst = derive.worst_decoder(rep)
    # 1080 pads to 1088 (0.74 % more rows) and 2160 to 2176 (0.74 %): equal; the first maximum is kept
    assert worst.where.width == 1920 and worst.where.target_bpp == 0.03 and worst.where.source == "meta"
    assert worst.where.kmac_px == 1088 * 1920 / (64 * 64) * 178_339_840 / (1920 * 1080) / 1000
    # ... and the breakdown is that call's: its modules add up to the worst case's MACs.
    assert sum(c.macs for c in worst.per_module.values()) == worst.where.macs == 1088 * 1920 // 4096 * 178_339_840
