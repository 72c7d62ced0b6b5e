"""Cross-check against fvcore and ptflops: totals against hand counts, differences attributed to modules."""

import torch
from compressai.layers import GDN
from torch import nn

from profiler.counting.crosscheck import attribute, crosscheck_codec, crosscheck_part, part_inputs

from conftest import NetworksCodec

# 16×16 input. Encoder: Conv2d 3→4 k5 s2 (to 8×8) then GDN(4) (a 1×1 conv 4→4 on x², with a bias).
CONV = 8 * 8 * 4 * 3 * 25          # 19 200
GDN_MACS = 8 * 8 * 4 * 4           # 1 024
BIAS = 8 * 8 * 4                   # one add per output element, conv and GDN alike
# Decoder: ConvTranspose2d 4→3 k5 s2 over its 8×8 input positions.
DECONV = 8 * 8 * 4 * 3 * 25        # 19 200


class SmallCodec(NetworksCodec):
    def __init__(self):
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Conv2d(3, 4, 5, stride=2, padding=2), GDN(4))
        self.decoder = nn.Sequential(nn.ConvTranspose2d(4, 3, 5, stride=2, padding=2, output_padding=1))


def test_totals_and_attribution():
    parts, how = part_inputs(SmallCodec(), 16, 16)
    assert how == "encode_networks/decode_networks"
    enc = crosscheck_part(*parts["encoder"], "encoder")
    assert enc["ours_strict"] == CONV + GDN_MACS == 20_224
    c = enc["counters"]
    assert c["fvcore"]["total"] == CONV + GDN_MACS and c["fvcore"]["relative_difference"] == 0
    # ptflops' default backend: conv + bias, nothing for GDN (exact type match on its module table)
    assert c["ptflops/pytorch"]["total"] == CONV + BIAS
    assert "ptflops/pytorch: 0 for GDN at encoder.1 (ours 1,024)" in enc["explanations"]
    # ptflops 'aten': every conv with its bias, GDN's included
    assert c["ptflops/aten"]["total"] == CONV + BIAS + GDN_MACS + BIAS
    aten_rows = {r["module"]: r["difference"] for r in c["ptflops/aten"]["modules"]}
    assert aten_rows == {"encoder.0": BIAS, "encoder.1": BIAS}
    assert not enc["flagged"]
    dec = crosscheck_part(*parts["decoder"], "decoder")
    assert dec["ours_strict"] == DECONV and dec["counters"]["fvcore"]["total"] == DECONV
    # vm: the transposed conv per output position (16×16) plus the bias of 3×16×16 outputs
    assert dec["ours_vm"] == 16 * 16 * 4 * 3 * 25 + 3 * 16 * 16


def test_counters_leave_no_hooks_behind():
    codec = SmallCodec()
    parts, _ = part_inputs(codec, 16, 16)
    crosscheck_part(*parts["encoder"], "encoder")
    for m in codec.encoder.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    assert not hasattr(codec.encoder[0], "__flops__")


def test_attribute_finds_the_module_and_the_rest():
    ours = {"d": 100, "d.a": 60, "d.b": 40, "d.b.x": 40}
    theirs = {"d": 75, "d.a": 60, "d.b": 0, "d.b.x": 0}          # misses d.b.x, and 15 more outside modules
    rows, unattributed = attribute(ours, {**theirs}, "d", {"d.b.x": "GDN", "d.b": "Sequential"})
    assert rows == [{"module": "d.b.x", "type": "GDN", "ours": 40, "theirs": 0, "difference": -40}]
    assert unattributed == 75 - 100 + 40 == 15


def test_codec_without_forward_says_why():
    class Opaque:
        encoder = nn.Identity()
        decoder = nn.Conv2d(7, 3, 1)                             # cannot take the encoder's 3 channels

        def encode(self, x):
            return b""

        def decode(self, b):
            return torch.zeros(1)

    crosscheck, missing = crosscheck_codec(Opaque())
    assert crosscheck["decoder"]["error"].startswith("RuntimeError")
    assert missing["crosscheck_decoder"][0] == "failed"
    assert crosscheck["encoder"]["ours_strict"] == 0
