"""The forward cases of the peers' own counting test suites, with the peers' expected values.

fvcore `tests/test_flop_count.py` counts one "flop" per multiply-accumulate: its values are MACs.
torch `test/test_flop_counter.py` (FlopCounterMode) counts 2 FLOPs per MAC: its values are halved here.
Each case either matches, or differs by a convention that the test names and checks by number:

- fvcore prices normalisation, upsampling and adaptive pooling as "flops" (batch norm 1, 2, 4 or 5
  per element, group norm 4 or 5, bilinear upsampling 4 per output element, adaptive average pooling
  1 per *input* element); in the strict convention these are element operations, never MACs (they are
  counted per element by kind, and the vm convention adds 1 per normalisation element);
- fvcore skips the sigmoid ("unsupported"); here it is 1 activation element per output, not a MAC;
- torch's values for a forward + backward pass include the backward; only the forward is counted
  here (the backward of an mm or a conv does twice the forward's MACs).

Cases that need CUDA or a backward pass only (test_backward, test_backward_reset,
test_conv_backwards_as_decomposition, the backward halves of test_convs, test_sdpa_nested_tensor,
test_nested_attention_fake_tensors, triton kernels) have no CPU forward value to compare.
"""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from profiler.counting import count_call
from profiler.counting.formulas import DEFAULT, Cost

aten = torch.ops.aten


def T(*shape, requires_grad=False):
    return torch.randn(*shape, requires_grad=requires_grad)


def _count(fn, *args, **kw):
    with torch.no_grad():
        return count_call(fn, *args, **kw)[1]


def _els(res, kind):
    return res.total().elements.get(kind, 0)


# ================================ fvcore tests/test_flop_count.py ===================================

class ThreeNet(nn.Module):
    def __init__(self, input_dim, conv_dim, linear_dim):
        super().__init__()
        self.conv = nn.Conv2d(input_dim, conv_dim, 1, 1)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear1 = nn.Linear(conv_dim, linear_dim)
        self.linear2 = nn.Linear(linear_dim, 1)

    def forward(self, x):
        x = self.pool(self.conv(x))
        return self.linear2(self.linear1(torch.flatten(x, 1)))


class CustomNet(nn.Module):
    def __init__(self, input_dim, output_dim):
        super().__init__()
        self.conv = nn.Linear(input_dim, output_dim)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        return self.sigmoid(self.conv(x))


def test_fvcore_customized_ops():
    net, x = CustomNet(5, 4), torch.rand(10, 5)
    reg = DEFAULT.with_mapping({aten.sigmoid: lambda *a, out_val, **k: Cost(macs=10000)})
    assert _count(net, x, registry=reg).ops["aten::sigmoid"]["macs"] == 10000          # fvcore: 10000
    reg = DEFAULT.with_mapping({aten.addmm: lambda *a, out_val, **k: Cost(macs=400000)})
    assert _count(net, x, registry=reg).ops["aten::addmm"]["macs"] == 400000           # fvcore: 400000


def test_fvcore_nn_and_linear():
    assert _count(nn.Linear(8, 4), T(5, 8)).macs == 5 * 8 * 4 == 160
    lin = nn.Linear(10, 20)
    assert _count(lin, T(5, 10)).macs == 5 * 10 * 20 == 1000
    assert _count(lin, T(5, 5, 10)).macs == 5 * 10 * 5 * 20 == 5000


def test_fvcore_skip_ops_differs_by_convention():
    res = _count(CustomNet(5, 4), torch.rand(10, 5))
    # fvcore: sigmoid skipped (1 call, 0 flops); here: 10×4 activation elements, not MACs
    assert res.macs == 10 * 5 * 4 and _els(res, "activation") == 40 and res.complete


# (conv_dim, batch, in, out, spatial, kernel, padding, stride, groups, transpose, output_padding)
_FVCORE_CONVS = [
    (2, 5, 10, 3, 15, 3, 1, 1, 1, False, 0),
    (2, 2, 10, 6, 20, 3, 1, 2, 1, False, 0),
    (2, 5, 16, 8, 15, 5, 2, 1, 4, False, 0),
    (2, 5, 16, 8, 15, 3, 1, 1, 8, False, 0),
    (1, 5, 10, 3, 15, 3, 1, 1, 1, False, 0),
    (3, 5, 10, 3, 15, 3, 1, 1, 1, False, 0),
    (2, 5, 10, 3, 15, 3, 1, 1, 1, True, 0),
    (2, 5, 10, 3, 15, 3, 1, 2, 1, True, 0),
    (2, 5, 10, 3, 15, 3, 1, 3, 1, True, 2),
]


@pytest.mark.parametrize("case", _FVCORE_CONVS)
def test_fvcore_conv(case):
    d, batch, cin, cout, spatial, k, pad, stride, groups, transpose, opad = case
    layers = [nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d] if transpose else \
        [nn.Conv1d, nn.Conv2d, nn.Conv3d]
    extra = {"output_padding": opad} if transpose else {}
    conv = layers[d - 1](cin, cout, k, stride, pad, groups=groups, **extra)
    x = torch.randn(batch, cin, *([spatial] * d))
    # fvcore's expected value: over the input positions for a transposed conv
    size = spatial if transpose else (spatial + 2 * pad - k) // stride + 1
    expected = batch * cin * cout * k ** d * size ** d // groups
    assert _count(conv, x).macs == expected


def test_fvcore_matmul_and_broadcast():
    m, n, p = 20, 10, 100
    for a, b, times in [((m, n), (n, p), 1), ((1, m, n), (1, n, p), 1), ((2, 2, m, n), (2, 2, n, p), 4),
                        ((1, m, n), (n, p), 1), ((2, m, n), (n, p), 2)]:
        assert _count(torch.matmul, T(*a), T(*b)).macs == times * m * n * p


def test_fvcore_bmm_and_einsum():
    assert _count(torch.bmm, T(2, 5, 2), T(2, 2, 12)).macs == 2 * 2 * 12 * 5 == 240
    assert _count(lambda: torch.einsum("nct,ncp->ntp", T(1, 5, 2), T(1, 5, 12))).macs == 2 * 12 * 5 == 120
    assert _count(lambda: torch.einsum("ntg,ncg->nct", T(1, 2, 6), T(1, 5, 6))).macs == 2 * 6 * 5 == 60
    assert _count(lambda: torch.einsum("nc,nchw->hw", torch.rand(3, 4), torch.rand(3, 4, 2, 3))).macs == 72
    for fn in (torch.mm, torch.matmul):
        assert _count(fn, torch.rand(3, 4), torch.rand(4, 5)).macs == 60


@pytest.mark.parametrize("module,x,fvcore,factor", [
    (nn.BatchNorm1d(10, affine=False).eval(), (10, 10), 100, 1),          # eval, no affine: 1/element
    (nn.BatchNorm2d(10, affine=False), (10, 10, 5, 5), 10000, 4),         # training, no affine: 4
    (nn.BatchNorm3d(10, affine=False), (10, 10, 5, 5, 5), 50000, 4),
])
def test_fvcore_batchnorm_differs_by_convention(module, x, fvcore, factor):
    res = _count(module, torch.randn(*x))
    assert res.macs == 0                                         # strict: normalisation is no MAC
    assert factor * _els(res, "normalization") == fvcore        # fvcore: `factor` per element


def test_fvcore_norm_handles_differ_by_convention():
    vec, x = torch.rand(2), torch.rand(2, 2, 2, 2)
    for args, fvcore, factor in [((vec, vec, vec, vec), 32, 2), ((vec, vec, None, None), 16, 1),
                                 ((vec, vec, vec, vec, True), 80, 5)]:
        res = _count(lambda: F.batch_norm(x, *args))
        assert res.macs == 0 and factor * _els(res, "normalization") == fvcore
    for args, fvcore, factor in [((2, vec, vec), 80, 5), ((2, None, None), 64, 4)]:
        res = _count(lambda: F.group_norm(x, *args))
        assert res.macs == 0 and factor * _els(res, "normalization") == fvcore


def test_fvcore_upsample_differs_by_convention():
    res = _count(lambda: F.interpolate(torch.rand(2, 2, 2, 2), None, 2, "bilinear", False))
    # fvcore 2⁴·4·4 = 256: 4 per output element; strict: 0 MACs, 64 resampled output elements
    assert res.macs == 0 and 4 * _els(res, "resample") == 2 ** 4 * 4 * 4


def test_fvcore_three_net_and_by_module():
    net, x = ThreeNet(2, 5, 3), torch.randn(4, 2, 10, 10)
    res = _count(net, x, roots={"net": net})
    conv, lin1, lin2 = 4 * 5 * 2 * 10 * 10, 4 * 5 * 3, 4 * 3 * 1
    assert res.macs == conv + lin1 + lin2 == 4072
    assert res.per_module["net.conv"].macs == conv and res.per_module["net.linear1"].macs == lin1
    assert res.per_module["net.linear2"].macs == lin2
    # fvcore prices adaptive_avg_pool2d at 2e-6 GFLOP = 2000 flops, 1 per input element (4·5·10·10), and adds
    # them to its total; strict: no MAC — pooling to 1×1 runs as aten::mean, 2000 reduction elements
    assert res.per_module["net.pool"].macs == 0
    assert res.per_module["net.pool"].elements == {"reduction": 4 * 5 * 10 * 10}


# ============================== torch test/test_flop_counter.py (FLOPs / 2) =========================

def test_torch_flop_counter_variety():
    mod = nn.Linear(9, 10)

    def fn():
        torch.mm(T(4, 5), T(5, 6))
        torch.addmm(T(4, 6), T(4, 5), T(5, 6), beta=0.5, alpha=0.5)
        torch.matmul(T(5, 6), T(6, 7))
        torch.einsum("ab,bc->ac", T(6, 7), T(7, 8))
        mod(T(8, 9))

    assert 2 * _count(fn).macs == 3012


def test_torch_op():
    assert 2 * _count(torch.mm, T(4, 5), T(5, 6)).macs == 240
    assert 2 * _count(torch.bmm, T(3, 4, 5), T(3, 5, 6)).macs == 720
    assert 2 * _count(lambda: (torch.addmm(T(4, 6), T(4, 5), T(5, 6)), torch.addmm(T(4, 1), T(4, 5), T(5, 6)),
                               torch.addmm(T(6), T(4, 5), T(5, 6)))).macs == 720
    assert 2 * _count(torch.baddbmm, T(3, 4, 6), T(3, 4, 5), T(3, 5, 6)).macs == 720
    assert 2 * _count(lambda: torch.conv2d(T(2, 3, 6, 6), T(6, 3, 4, 4), padding=1)).macs == 28800
    assert 2 * _count(lambda: torch.conv1d(T(2, 3, 6), T(6, 3, 4), padding=1)).macs == 1440


def test_torch_torchscript():
    def foo(x):
        return torch.mm(x, x)

    plain = _count(foo, T(5, 5)).macs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = _count(torch.jit.script(foo), T(5, 5)).macs
    assert plain == scripted == 125


def test_torch_autograd_op_forward_differs_by_convention():
    class _CustomOp(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return torch.mm(x, x)

        @staticmethod
        def backward(ctx, g):
            return torch.mm(g, g) + torch.mm(g, g)

    res = _count(_CustomOp.apply, T(5, 5, requires_grad=True))
    # torch: 750 FLOPs for forward + backward (its backward runs two mm); the forward alone: 250
    assert 2 * res.macs == 750 - 2 * 250 == 250


def test_torch_convs_forward_values():
    # test_convs' expected forward values (its backward halves are not inference)
    assert 2 * _count(lambda: F.conv_transpose2d(torch.rand(1, 1, 2, 2), torch.randn(1, 1, 2, 2))).macs == 32
    assert 2 * _count(lambda: F.conv2d(torch.rand(1, 1, 2, 2), torch.randn(1, 1, 1, 1))).macs == 8


def test_torch_module_and_inference_mode_resnet18():
    torchvision = pytest.importorskip("torchvision")
    net = torchvision.models.resnet18().to("meta").eval()
    x = torch.zeros(1, 3, 224, 224, device="meta")
    std = _count(net, x, roots={"ResNet": net})
    with torch.inference_mode():
        _, inf = count_call(net, x, roots={"ResNet": net})
    layer1 = lambda r: sum(c.macs for k, c in r.per_module.items() if k.startswith("ResNet.layer1"))
    # torch: 10884440064 FLOPs forward + backward (= 3 × forward: every backward is 2 × its forward),
    # layer1 conv forward 924844032 FLOPs
    assert 2 * std.macs == 10884440064 // 3 and 2 * inf.macs == 10884440064 // 3
    assert 2 * layer1(std) == 2 * layer1(inf) == 924844032
    assert inf.complete and std.complete


def test_torch_conv_transpose_loop_forward_differs_by_convention():
    x = torch.rand(1, 4, 30, 2)
    model = nn.ConvTranspose2d(4, 8, (2, 2), stride=2)

    def loop():
        for _ in range(50):
            model(x)

    # torch: 1536000 FLOPs for 50 × (forward + weight-gradient backward, equal to the forward)
    assert 2 * _count(loop).macs == 1536000 // 2


def test_torch_custom_mapping():
    a = T(4, 5)
    assert _count(lambda: a + a, registry=DEFAULT.with_mapping({aten.add: lambda *a, out_val, **k: 5})).macs == 5
    count = lambda *args, out_val, **kw: out_val.numel()
    assert _count(lambda: a + a, registry=DEFAULT.with_mapping({aten.add: count})).macs == 20


def test_torch_noop():
    res = _count(lambda: T(4, 5).cos())
    assert res.macs == 0 and _els(res, "arithmetic") == 20 and res.complete


def test_torch_sdpa_forward_values():
    # CUDA-only in the peer (math/flash/efficient agree); the forward value, here on the CPU kernels
    def flops(s_k):
        q = torch.randn(4, 8, 128, 64)
        k, v = torch.randn(4, 8, s_k, 64), torch.randn(4, 8, s_k, 64)
        return 2 * _count(lambda: F.scaled_dot_product_attention(q, k, v, dropout_p=0, is_causal=True)).macs

    assert flops(128) == 134217728
    assert flops(256) == 268435456


def test_torch_addmm_out():
    y = torch.zeros(10, 10)
    assert 2 * _count(lambda: torch.mm(T(10, 10), T(10, 10), out=y)).macs == 2000


def test_torch_hook_registration():
    from torch.nn.modules import module as module_mod

    model, x = nn.Linear(100, 100), torch.randn(3, 100)
    seen = []

    def fn():
        seen.append((len(module_mod._global_forward_pre_hooks), len(module_mod._global_forward_hooks)))
        return model(x)

    _count(fn)
    assert seen == [(1, 1)]
    assert len(module_mod._global_forward_pre_hooks) == 0 and len(module_mod._global_forward_hooks) == 0


def test_torch_pytrees_forward_differs_by_convention():
    class Foo(nn.Module):
        def forward(self, x):
            x = x["a"].relu_()
            return {"a": torch.mm(x, x)}

    class Mod(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = Foo(), Foo()

        def forward(self, x):
            return self.b(self.a(x))

    class Mod2(nn.Module):
        def forward(self, x):
            return (torch.mm(x, x),)

    mod, mod2 = Mod(), Mod2()
    res = _count(mod, {"a": torch.randn(10, 10)}, roots={"Mod": mod})
    # torch: 12000 FLOPs under Mod for forward + backward (3 × forward); the forward: 4000
    mm = sum(c.macs for k, c in res.per_module.items() if k.startswith("Mod"))
    assert 2 * mm == 12000 // 3 and res.per_module["Mod.a"].macs == res.per_module["Mod.b"].macs == 1000
    res = _count(mod2, torch.randn(10, 10), roots={"Mod2": mod2})
    assert 2 * res.per_module["Mod2"].macs == 6000 // 3


def test_torch_custom_op():
    @torch.library.custom_op("counting_peers::foo", mutates_args=())
    def foo(x: torch.Tensor) -> torch.Tensor:
        return x.sin()

    called = []

    def formula(*args, out_val, **kw):
        called.append(1)
        return Cost(macs=9001)

    x = torch.randn(3)
    res = _count(foo, x, registry=DEFAULT.with_mapping({torch.ops.counting_peers.foo: formula}))
    assert called == [1] and res.macs == 9001
    # without a formula: uncounted by name with the reason, never a silent 0
    res = _count(foo, x)
    assert res.uncounted == {"counting_peers::foo": 1} and not res.complete
    assert res.uncounted_why["counting_peers::foo"] == "no formula and no decomposition"


def test_torch_scaled_mm():
    f8 = torch.float8_e4m3fn
    res = _count(lambda: torch._scaled_mm(torch.randn(3 * 16, 5 * 16).to(f8), torch.randn(7 * 16, 5 * 16).to(f8).t(),
                                          scale_a=torch.ones(()), scale_b=torch.ones(()), out_dtype=torch.bfloat16))
    assert 2 * res.macs == 860160
