"""One test per op family, each against a count written out by hand (not the tool's own output).

A conv does C_in/groups·prod(k) MACs per output element; a transposed conv C_out/groups·prod(k) per
*input* element; [n,k]@[k,m] does n·k·m. Element operations are never MACs.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from profiler.counting import count_call
from profiler.counting.conventions import figure


def _count(fn, *args, roots=None):
    with torch.no_grad():
        return count_call(fn, *args, roots=roots, root_name="call")[1]


def _elements(res, kind):
    return res.total().elements.get(kind, 0)


def test_conv_k5_s2():
    conv = nn.Conv2d(3, 8, 5, stride=2, padding=2)
    res = _count(conv, torch.rand(1, 3, 32, 32), roots={"net": conv})
    # 16×16 output positions × 8 output channels × (3 in × 5 × 5)
    assert res.macs == 16 * 16 * 8 * 3 * 25 == 153_600
    assert res.per_module["net"].macs == 153_600
    assert res.total().bias == 8 * 16 * 16
    assert res.complete, res.uncounted


def test_conv_transpose_k5_s2_counts_input_positions():
    deconv = nn.ConvTranspose2d(8, 6, 5, stride=2, padding=2, output_padding=1)
    res = _count(deconv, torch.rand(1, 8, 10, 10))
    # every one of the 10×10×8 input values is scattered through 6 output channels × 5×5 taps
    assert res.macs == 10 * 10 * 8 * 6 * 25 == 120_000
    # the VM's ptflops counts per *output* position (20×20): stride² = 4 times more
    assert res.total().vm_macs == 20 * 20 * 8 * 6 * 25 == 480_000


def test_conv_transpose_facts_case():
    # complexity-facts.md §3: ConvTranspose2d 192→192 k5 s2 on 16² = 235.9 M (thop says 943.7 M)
    deconv = nn.ConvTranspose2d(192, 192, 5, stride=2, padding=2, output_padding=1, device="meta")
    res = _count(deconv, torch.zeros(1, 192, 16, 16, device="meta"))
    assert res.macs == 16 * 16 * 192 * 192 * 25 == 235_929_600


def test_grouped_and_depthwise_conv():
    grouped = nn.Conv2d(8, 12, 3, padding=1, groups=4)
    res = _count(grouped, torch.rand(1, 8, 6, 6))
    assert res.macs == 6 * 6 * 12 * (8 // 4) * 9 == 7_776
    depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    res = _count(depthwise, torch.rand(1, 8, 6, 6))
    assert res.macs == 6 * 6 * 8 * 1 * 9 == 2_592
    grouped_t = nn.ConvTranspose2d(8, 12, 3, stride=2, groups=4)
    res = _count(grouped_t, torch.rand(1, 8, 5, 5))
    assert res.macs == 5 * 5 * 8 * (12 // 4) * 9 == 5_400


def test_dilated_1d_3d_conv():
    res = _count(nn.Conv2d(4, 4, 3, dilation=2), torch.rand(1, 4, 9, 9))     # 9 − 2·2 = 5
    assert res.macs == 5 * 5 * 4 * 4 * 9 == 3_600
    res = _count(nn.Conv1d(4, 6, 3), torch.rand(2, 4, 10))                  # batch 2, length 8
    assert res.macs == 2 * 8 * 6 * 4 * 3 == 1_152
    res = _count(nn.Conv3d(2, 3, 3), torch.rand(1, 2, 5, 5, 5))             # 3×3×3 output
    assert res.macs == 27 * 3 * 2 * 27 == 4_374


def test_linear():
    lin = nn.Linear(16, 32)
    res = _count(lin, torch.rand(2, 5, 16))
    assert res.macs == 2 * 5 * 16 * 32 == 5_120
    assert res.total().bias == 2 * 5 * 32
    assert res.complete


def test_matmul_operator():
    a, b = torch.rand(3, 4, 5), torch.rand(5, 6)
    assert _count(lambda: a @ b).macs == 3 * 4 * 5 * 6 == 360
    assert _count(lambda: a[0] @ b).macs == 4 * 5 * 6 == 120              # 2-D: aten::mm
    assert _count(lambda: a[0, 0] @ b).macs == 5 * 6 == 30                # vector-matrix


def test_einsum():
    a, b = torch.rand(2, 3, 4), torch.rand(2, 4, 5)
    assert _count(lambda: torch.einsum("bij,bjk->bik", a, b)).macs == 2 * 3 * 4 * 5 == 120
    x = torch.rand(1, 8, 4, 4)
    # channel Gram matrix: 8×8 outputs, each a sum over 16 positions
    assert _count(lambda: torch.einsum("bchw,bdhw->bcd", x, x)).macs == 8 * 8 * 16 == 1_024


def test_bmm_and_baddbmm():
    a, b = torch.rand(2, 3, 4), torch.rand(2, 4, 5)
    assert _count(torch.bmm, a, b).macs == 2 * 3 * 4 * 5 == 120
    res = _count(torch.baddbmm, torch.rand(2, 3, 5), a, b)
    assert res.macs == 120 and res.total().bias == 2 * 3 * 5


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_scaled_dot_product_attention(device):
    q = torch.rand(1, 2, 10, 8, device=device)
    k = torch.rand(1, 2, 12, 8, device=device)
    v = torch.rand(1, 2, 12, 6, device=device)
    res = _count(F.scaled_dot_product_attention, q, k, v)
    # QKᵀ: 2 heads × 10×12 scores × 8; then scores·V: 2 × 10×6 outputs × 12
    assert res.macs == 2 * 10 * 12 * 8 + 2 * 10 * 12 * 6 == 3_360
    assert _elements(res, "softmax") == 2 * 10 * 12        # one softmax over the scores, fused or not
    assert res.complete, res.uncounted


def test_gdn_style_functional_conv_on_square():
    gamma = torch.rand(4, 4, 1, 1)
    beta = torch.rand(4)
    x = torch.rand(1, 4, 6, 6)

    def gdn(x):
        norm = F.conv2d(x * x, gamma, beta)                 # a functional conv hook counters miss
        return x * torch.rsqrt(norm)

    res = _count(gdn, x)
    assert res.macs == 6 * 6 * 4 * 4 == 576
    # x·x and x·rsqrt: arithmetic; rsqrt: normalisation — element ops, never MACs
    assert _elements(res, "arithmetic") == 2 * 144
    assert _elements(res, "normalization") == 144


def test_compressai_gdn_module_attributed():
    from compressai.layers import GDN

    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), GDN(8))
    res = _count(net, torch.rand(1, 3, 6, 6), roots={"g": net})
    assert res.per_module["g.0"].macs == 36 * 8 * 3 * 9 == 7_776
    # GDN: a 1×1 conv 8→8 on x² at 36 positions (its parameter reparametrisation is element ops only)
    assert res.per_module["g.1"].macs == 36 * 8 * 8 == 2_304
    assert res.macs == 7_776 + 2_304


def test_masked_conv_in_a_python_loop_equals_dense():
    from compressai.layers import MaskedConv2d

    torch.manual_seed(0)
    ctx = MaskedConv2d(4, 6, kernel_size=5, padding=2)
    y = torch.rand(1, 4, 4, 5)

    def serial(y):
        # what an autoregressive decoder does: one 5×5 window per position, in raster order
        y_pad = F.pad(y, (2, 2, 2, 2))
        w = ctx.weight * ctx.mask
        out = []
        for h in range(4):
            for i in range(5):
                out.append(F.conv2d(y_pad[:, :, h:h + 5, i:i + 5], w, ctx.bias))
        return out

    per_position = 6 * 4 * 25                               # dense kernel, masked taps included
    assert _count(serial, y).macs == 20 * per_position == 12_000
    assert _count(ctx, y).macs == 12_000


def test_pixel_shuffle_and_bilinear_are_element_ops():
    res = _count(nn.PixelShuffle(2), torch.rand(1, 16, 4, 4))
    assert res.macs == 0 and _elements(res, "resample") == 16 * 4 * 4
    res = _count(lambda x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False),
                 torch.rand(1, 4, 5, 5))
    assert res.macs == 0 and _elements(res, "resample") == 4 * 10 * 10
    assert res.complete


def test_op_without_formula_is_listed_not_silent():
    lin = nn.Linear(8, 8)

    def fn(x):
        return torch.fft.rfft(lin(x)).abs()

    res = _count(fn, torch.rand(2, 8), roots={"m": lin})
    assert not res.complete
    assert res.uncounted == {"aten::_fft_r2c": 1}
    assert res.uncounted_at == {"aten::_fft_r2c": ["call"]}
    assert res.macs == 2 * 8 * 8                            # what has a formula is still counted
    assert res.to_dict()["complete"] is False


def test_vm_convention_conv_bias_relu():
    net = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.ReLU())
    res = _count(net, torch.rand(1, 3, 32, 32))
    t = res.total()
    assert figure(t, "strict") == 153_600
    # + 1 per output element for the bias, + 1 per activation element
    assert figure(t, "vm") == 153_600 + 2_048 + 2_048


def test_exception_inside_module_does_not_shift_attribution():
    class Fails(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    a, bad, b = nn.Linear(4, 4), Fails(), nn.Linear(4, 4)
    root = nn.ModuleDict({"a": a, "bad": bad, "b": b})

    def fn(x):
        a(x)
        try:
            bad(x)
        except RuntimeError:
            pass
        return b(x)

    res = _count(fn, torch.rand(1, 4), roots={"r": root})
    assert res.per_module["r.b"].macs == 16 and res.per_module["r.a"].macs == 16
