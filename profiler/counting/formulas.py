"""Op → cost. Each formula is a small pure function of shapes, registered for aten overload packets.

A `Cost` keeps what the conventions need apart: true multiply-accumulates (`macs`), the multiply-
accumulates the JPEG AI reference software's counter would report where they differ (`vm_macs`: a
transposed conv counted per output position), the output elements that receive a bias add, and
element operations by kind (activation, normalisation, arithmetic, resampling, softmax). Strict MACs
never include element operations.

Ops in `ZERO_COST` move or create data and cost nothing; any other op without a formula is reported
by the engine as uncounted, never silently counted as 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

aten = torch.ops.aten

ELEMENT_KINDS = ("activation", "normalization", "arithmetic", "resample", "softmax", "reduction")


@dataclass(frozen=True)
class Cost:
    macs: int = 0
    vm_macs: int | None = None      # None: the reference software counts the same as `macs`
    bias: int = 0                   # output elements that get a bias add
    elements: int = 0               # element operations (never MACs)
    element_kind: str = ""

    def vm(self) -> int:
        return self.macs if self.vm_macs is None else self.vm_macs


Formula = Callable[..., Cost]
FORMULAS: dict[object, Formula] = {}


def register(*packets: object) -> Callable[[Formula], Formula]:
    def deco(fn: Formula) -> Formula:
        for p in packets:
            FORMULAS[p] = fn
        return fn
    return deco


def _shape(x) -> tuple[int, ...]:
    return tuple(x.shape) if isinstance(x, torch.Tensor) else ()


def _numel(shape) -> int:
    return math.prod(shape) if shape else 1


# ---- pure functions of shapes -------------------------------------------------------------------

def conv_macs(x_shape, w_shape, out_shape, transposed: bool, groups: int = 1) -> tuple[int, int]:
    """(true MACs, MACs counted per output position) of a convolution of any dimensionality.

    weight is [C_out, C_in/groups, *k] for a convolution and [C_in, C_out/groups, *k] for a transposed
    one. A convolution does C_in/groups·prod(k) MACs per output element. A transposed convolution does
    C_out/groups·prod(k) MACs per *input* element (each input value is scattered through the kernel);
    counting it per output position instead gives stride^d times more.
    """
    k = _numel(w_shape[2:])
    if not transposed:
        macs = _numel(out_shape) * w_shape[1] * k
        return macs, macs
    true_macs = _numel(x_shape) * w_shape[1] * k
    per_output = _numel(out_shape) * (w_shape[0] // groups) * k
    return true_macs, per_output


def matmul_macs(a_shape, b_shape) -> int:
    """[..., n, k] @ [..., k, m] → prod(batch)·n·k·m (batch dims broadcast)."""
    n, k = a_shape[-2], a_shape[-1]
    m = b_shape[-1]
    batch = torch.broadcast_shapes(a_shape[:-2], b_shape[:-2])
    return _numel(batch) * n * k * m


def sdpa_macs(q_shape, k_shape, v_shape) -> int:
    """QKᵀ then (softmax)·V: B·H·L·S·E + B·H·L·S·Ev."""
    *bh, L, E = q_shape
    S = k_shape[-2]
    Ev = v_shape[-1]
    b = _numel(torch.broadcast_shapes(tuple(bh), tuple(k_shape[:-2])))
    return b * L * S * E + b * L * S * Ev


# ---- registry -----------------------------------------------------------------------------------

@register(aten.convolution, aten._convolution)
def _convolution(x, w, bias, stride, padding, dilation, transposed, output_padding, groups, *rest,
                 out=None) -> Cost:
    true_macs, per_out = conv_macs(_shape(x), _shape(w), _shape(out), bool(transposed), int(groups))
    return Cost(macs=true_macs, vm_macs=per_out, bias=_numel(_shape(out)) if bias is not None else 0)


@register(aten.mm)
def _mm(a, b, out=None) -> Cost:
    return Cost(macs=matmul_macs(_shape(a), _shape(b)))


@register(aten.mv)
def _mv(a, v, out=None) -> Cost:
    return Cost(macs=_numel(_shape(a)))


@register(aten.addmv)
def _addmv(bias, a, v, *rest, out=None, **kw) -> Cost:
    return Cost(macs=_numel(_shape(a)), bias=_numel(_shape(out)))


@register(aten.dot, aten.vdot)
def _dot(a, b, out=None) -> Cost:
    return Cost(macs=_numel(_shape(a)))


@register(aten._addmm_activation)
def _addmm_activation(bias, a, b, *rest, out=None, **kw) -> Cost:
    # Linear + GELU/ReLU fused (CUDA): the activation is not a MAC; it is invisible to element counts here.
    return Cost(macs=matmul_macs(_shape(a), _shape(b)), bias=_numel(_shape(out)))


@register(aten.addmm)
def _addmm(bias, a, b, *rest, out=None, **kw) -> Cost:
    return Cost(macs=matmul_macs(_shape(a), _shape(b)), bias=_numel(_shape(out)))


@register(aten.bmm)
def _bmm(a, b, out=None) -> Cost:
    return Cost(macs=matmul_macs(_shape(a), _shape(b)))


@register(aten.baddbmm)
def _baddbmm(bias, a, b, *rest, out=None, **kw) -> Cost:
    return Cost(macs=matmul_macs(_shape(a), _shape(b)), bias=_numel(_shape(out)))


@register(aten.addbmm)
def _addbmm(bias, a, b, *rest, out=None, **kw) -> Cost:
    # Σ_b a[b] @ b[b] + bias: the batch is reduced into one [n, m] output.
    return Cost(macs=matmul_macs(_shape(a), _shape(b)), bias=_numel(_shape(out)))


@register(aten._scaled_dot_product_flash_attention_for_cpu, aten._scaled_dot_product_flash_attention,
          aten._scaled_dot_product_efficient_attention, aten._scaled_dot_product_cudnn_attention)
def _sdpa(q, k, v, *rest, out=None, **kw) -> Cost:
    # The fused kernels also run one softmax over the [.., L, S] scores: counted as softmax elements,
    # as the unfused (math) path counts its `_softmax`/`_safe_softmax`.
    *bh, L, _ = _shape(q)
    S = _shape(k)[-2]
    scores = _numel(torch.broadcast_shapes(tuple(bh), tuple(_shape(k)[:-2]))) * L * S
    return Cost(macs=sdpa_macs(_shape(q), _shape(k), _shape(v)), elements=scores, element_kind="softmax")


def _element(kind: str) -> Formula:
    def fn(*args, out=None, **kw) -> Cost:
        first = out[0] if isinstance(out, (tuple, list)) else out
        return Cost(elements=_numel(_shape(first)), element_kind=kind)
    fn.__name__ = f"element_{kind}"
    return fn


def _reduction(*args, out=None, **kw) -> Cost:
    # A reduction reads every input element once.
    return Cost(elements=_numel(_shape(args[0])) if args else 0, element_kind="reduction")


_ACTIVATIONS = ["relu", "relu_", "leaky_relu", "leaky_relu_", "gelu", "sigmoid", "sigmoid_", "tanh", "tanh_",
                "silu", "silu_", "hardtanh", "hardtanh_", "elu", "elu_", "softplus", "hardswish", "hardsigmoid",
                "mish", "prelu", "_prelu_kernel", "threshold", "glu", "celu", "selu", "log_sigmoid_forward"]
_NORMALIZATION = ["native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
                  "native_layer_norm", "native_group_norm", "_fused_rms_norm", "rsqrt", "sqrt"]
_ARITHMETIC = ["add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "pow", "neg", "abs", "exp", "exp2",
               "log", "log2", "log1p", "expm1", "reciprocal", "round", "floor", "ceil", "trunc", "clamp", "clamp_",
               "clamp_min", "clamp_max", "clamp_min_", "clamp_max_", "maximum", "minimum", "max.other",
               "min.other", "sign", "erf", "erfc", "erfinv", "lerp", "addcmul", "addcdiv", "where", "rsub",
               "remainder", "fmod", "floor_divide", "eq", "ne", "lt", "le", "gt", "ge", "logical_and",
               "logical_or", "logical_not", "bitwise_and", "bitwise_or", "bitwise_not", "bitwise_xor",
               "sin", "cos", "atan2", "hypot", "square", "frac", "masked_fill", "masked_fill_", "fill_",
               "isnan", "isinf", "nan_to_num", "copysign", "xlogy", "sgn", "tril", "triu", "scatter_add",
               "index_add", "index_add_", "scatter_reduce", "add_", "fill", "logit", "sinh", "cosh", "tan",
               "atan", "asin", "acos", "heaviside", "float_power", "rsqrt_", "sqrt_", "round_", "abs_",
               "neg_", "reciprocal_", "exp_", "log_", "floor_", "ceil_", "pow_", "where_", "sign_"]
_RESAMPLE = ["upsample_bilinear2d", "upsample_nearest2d", "upsample_bicubic2d", "upsample_nearest1d",
             "upsample_linear1d", "upsample_trilinear3d", "upsample_nearest3d", "_upsample_bilinear2d_aa",
             "_upsample_bicubic2d_aa", "_upsample_nearest_exact2d", "pixel_shuffle", "pixel_unshuffle",
             "grid_sampler_2d", "avg_pool2d", "max_pool2d_with_indices", "adaptive_avg_pool2d",
             "_adaptive_avg_pool2d", "avg_pool1d", "avg_pool3d", "max_pool3d_with_indices"]
_SOFTMAX = ["_softmax", "_log_softmax", "_safe_softmax"]
_REDUCTION = ["sum", "mean", "amax", "amin", "max", "min", "prod", "var", "std", "var_mean", "std_mean",
              "norm", "linalg_vector_norm", "cumsum", "cumprod", "argmax", "argmin", "all", "any", "logsumexp",
              "sort", "topk", "median", "kthvalue"]


def _packets(names):
    for n in names:
        base = n.split(".")[0]
        p = getattr(aten, base, None)
        if p is not None:
            yield p


for _kind, _names in (("activation", _ACTIVATIONS), ("normalization", _NORMALIZATION),
                      ("arithmetic", _ARITHMETIC), ("resample", _RESAMPLE), ("softmax", _SOFTMAX)):
    for _p in _packets(_names):
        FORMULAS[_p] = _element(_kind)
for _p in _packets(_REDUCTION):
    FORMULAS[_p] = _reduction

# Ops that create, view, move or reorder data: no arithmetic. Listed so that "uncounted" means an op
# nobody looked at, not one known to cost nothing.
_ZERO_COST_NAMES = [
    "view", "_unsafe_view", "reshape", "expand", "permute", "transpose", "t", "squeeze", "unsqueeze", "flatten",
    "unflatten", "select", "slice", "narrow", "index", "index_select", "gather", "scatter", "index_put",
    "index_put_", "_index_put_impl_", "cat", "stack", "split", "split_with_sizes", "chunk", "unbind",
    "clone", "copy_", "contiguous", "detach", "alias", "lift_fresh", "lift_fresh_copy", "empty",
    "empty_like", "empty_strided", "new_empty", "new_empty_strided", "zeros", "zeros_like", "ones",
    "ones_like", "full", "full_like", "new_zeros", "new_ones", "new_full", "arange", "linspace", "scalar_tensor",
    "constant_pad_nd", "reflection_pad2d", "replication_pad2d", "reflection_pad1d", "replication_pad1d",
    "replication_pad3d", "reflection_pad3d", "_pad_circular", "roll", "flip", "repeat", "tile",
    "as_strided", "as_strided_", "resize_", "set_", "_local_scalar_dense", "item", "is_nonzero", "equal",
    "nonzero", "masked_select", "sym_size", "sym_stride", "sym_numel", "sym_storage_offset", "dim",
    "_reshape_alias", "_to_copy", "diagonal", "movedim", "expand_as", "view_as", "type_as", "to", "_to_dense",
    "zero_", "normal_", "uniform_", "bernoulli_", "random_", "randn", "rand", "randint", "randperm",
    "unfold", "im2col", "col2im", "channel_shuffle", "native_dropout", "dropout", "bernoulli",
    "masked_scatter", "select_scatter", "slice_scatter", "diagonal_scatter", "as_strided_scatter",
    "split_copy", "unsqueeze_", "squeeze_", "t_", "transpose_", "detach_", "_unsafe_index",
    "_unsafe_index_put", "tensor_split", "pin_memory", "_pin_memory", "record_stream", "bucketize",
    "searchsorted", "histc", "unique_dim", "_unique2", "unique_consecutive", "count_nonzero",
    "_copy_from", "_copy_from_and_resize", "_conj", "_neg_view", "resolve_conj", "resolve_neg", "view_as_real",
    "view_as_complex", "empty_permuted", "rand_like", "randn_like", "randint_like", "normal", "alias_copy",
    "view_copy", "permute_copy", "expand_copy", "_assert_async", "_assert_scalar", "pad", "_unsafe_masked_index",
    "_to_copy", "clone", "detach_copy", "t_copy", "transpose_copy", "unsqueeze_copy", "squeeze_copy",
    "slice_copy", "select_copy", "unbind_copy", "split_with_sizes_copy", "as_strided_copy",
]
ZERO_COST = frozenset(_packets(_ZERO_COST_NAMES))


def cost_of(func, args, kwargs, out) -> Cost | None:
    """The cost of one executed op, or None when no formula covers it (an uncounted op)."""
    packet = func._overloadpacket
    fn = FORMULAS.get(packet)
    if fn is None:
        return Cost() if packet in ZERO_COST else None
    return fn(*args, out=out, **kwargs)
