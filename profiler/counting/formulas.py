"""Op → cost. Each formula is a small pure function of shapes, held in one `FormulaRegistry`.

A `Cost` keeps what the conventions need apart: true multiply-accumulates (`macs`), the multiply-
accumulates the JPEG AI reference software's counter would report where they differ (`vm_macs`: a
transposed conv counted per output position), the output elements that receive a bias add, and
element operations by kind (activation, normalisation, arithmetic, resampling, softmax, reduction,
l2norm). Strict MACs never include element operations.

The registry is keyed by overload where the overloads of one op differ in kind (`aten.max.other` is
element-wise, `aten.max.dim` a reduction) and by overload packet otherwise; a lookup tries the
overload first. It refuses a duplicate registration and a name torch does not have, at registration
time (a typo would otherwise leave an op silently uncounted). Names that only some torch versions have
are registered with `optional=True` and listed in `absent`. `DEFAULT` is built once and frozen; a
counter that needs its own formulas takes `DEFAULT.with_mapping({...})` (as torch's
`FlopCounterMode(custom_mapping=...)`): the mapping may replace a default formula, for that counter only.

Formulas are called as `fn(*args, out_val=<op output>, **kwargs)`: `out_val` is a name no op's schema
uses (tests/test_counting_registry.py checks every schema), so an op called with `out=` reaches its
formula unchanged. Ops in the registry's zero-cost set move or create data, or keep books
(`profiler::_record_function_*`), and cost nothing; any other op without a formula is decomposed by the
engine or reported as uncounted, never silently counted as 0.

Besides aten (and other namespaces') ops, a few *torch functions* have a formula (`register_function`):
an L2 normalisation (`F.normalize`) is several aten ops, but the reference software's `Norm` hook counts
it as one operation per output element, which only the function call itself can be priced as.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch._ops import OpOverload, OpOverloadPacket

aten = torch.ops.aten

ELEMENT_KINDS = ("activation", "normalization", "arithmetic", "resample", "softmax", "reduction", "l2norm")
OUTPUT_KW = "out_val"   # the keyword under which a formula receives the op's output


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


class RegistryError(ValueError):
    """A registration the registry refuses: a duplicate, a name torch does not have, a frozen registry."""


def resolve(target) -> OpOverload | OpOverloadPacket:
    """`aten.mm`, `aten.max.other`, "aten::max.other", "max.other" (aten by default) or
    "quantized::conv2d" → the op object; a name torch does not have raises RegistryError."""
    if isinstance(target, (OpOverload, OpOverloadPacket)):
        return target
    if not isinstance(target, str):
        raise RegistryError(f"not an op: {target!r}")
    ns, _, rest = target.rpartition("::")
    name, _, overload = rest.partition(".")
    try:
        packet = getattr(getattr(torch.ops, ns or "aten"), name)
    except (AttributeError, RuntimeError) as exc:
        raise RegistryError(f"torch has no op {ns or 'aten'}::{name}") from exc
    if not overload:
        return packet
    if overload not in packet.overloads():
        raise RegistryError(f"{ns or 'aten'}::{name} has no overload {overload!r} (it has {packet.overloads()})")
    return getattr(packet, overload)


def op_name(op) -> str:
    """"aten::max.other" for an overload, "aten::max" for a packet."""
    if isinstance(op, OpOverload):
        packet = op._overloadpacket
        return f"{op_name(packet)}.{op._overloadname}"
    return str(op).replace(".", "::", 1)


class FormulaRegistry:
    """Op (overload or packet) → formula; a set of zero-cost ops; torch function → formula."""

    def __init__(self, parent: "FormulaRegistry | None" = None):
        self._parent = parent
        self._formulas: dict[object, Formula] = {}
        self._zero: set = set()
        self._functions: dict[Callable, Formula] = {}
        self._absent: list[str] = []
        self._frozen = False

    # -- building -------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._frozen:
            raise RegistryError("this registry is frozen; use with_mapping() for a counter's own formulas")

    def _key(self, target, optional: bool):
        try:
            return resolve(target)
        except RegistryError:
            if optional:
                self._absent.append(str(target))
                return None
            raise

    def _taken(self, key) -> bool:
        return key in self._formulas or key in self._zero

    def add(self, target, fn: Formula, optional: bool = False) -> None:
        self._check_open()
        key = self._key(target, optional)
        if key is None:
            return
        if self._taken(key):
            raise RegistryError(f"{op_name(key)} is registered twice")
        self._formulas[key] = fn

    def register(self, *targets, optional: bool = False) -> Callable[[Formula], Formula]:
        def deco(fn: Formula) -> Formula:
            for t in targets:
                self.add(t, fn, optional)
            return fn
        return deco

    def add_zero_cost(self, *targets, optional: bool = False) -> None:
        self._check_open()
        for t in targets:
            key = self._key(t, optional)
            if key is None:
                continue
            if self._taken(key):
                raise RegistryError(f"{op_name(key)} is registered twice")
            self._zero.add(key)

    def register_function(self, fn_obj: Callable, formula: Formula) -> None:
        self._check_open()
        if fn_obj in self._functions:
            raise RegistryError(f"{getattr(fn_obj, '__name__', fn_obj)} is registered twice")
        self._functions[fn_obj] = formula

    def freeze(self) -> "FormulaRegistry":
        self._frozen = True
        return self

    def with_mapping(self, mapping: Mapping[object, Formula]) -> "FormulaRegistry":
        """A registry for one counter: `mapping`'s formulas first (they may replace this registry's),
        everything else from this one. Two keys naming the same op, or an unknown name, are refused."""
        child = FormulaRegistry(parent=self)
        for target, fn in mapping.items():
            key = resolve(target)
            if key in child._formulas:
                raise RegistryError(f"{op_name(key)} is given twice in the mapping")
            child._formulas[key] = fn
        return child.freeze()

    # -- lookup ---------------------------------------------------------------------------------
    def lookup(self, func) -> Formula | None:
        """The formula for an executed overload: its own entry, else its packet's; a mapping's entries
        before its parent's. None when there is none (zero-cost ops included)."""
        keys = (func, getattr(func, "_overloadpacket", None))
        reg: FormulaRegistry | None = self
        while reg is not None:
            for k in keys:
                if k is not None and k in reg._formulas:
                    return reg._formulas[k]
                if k is not None and k in reg._zero:
                    return None
            reg = reg._parent
        return None

    def is_zero_cost(self, func) -> bool:
        keys = (func, getattr(func, "_overloadpacket", None))
        reg: FormulaRegistry | None = self
        while reg is not None:
            for k in keys:
                if k is not None and k in reg._formulas:
                    return False
                if k is not None and k in reg._zero:
                    return True
            reg = reg._parent
        return False

    def function_formula(self, fn_obj) -> Formula | None:
        reg: FormulaRegistry | None = self
        while reg is not None:
            if fn_obj in reg._functions:
                return reg._functions[fn_obj]
            reg = reg._parent
        return None

    @property
    def has_functions(self) -> bool:
        reg: FormulaRegistry | None = self
        while reg is not None:
            if reg._functions:
                return True
            reg = reg._parent
        return False

    @property
    def absent(self) -> tuple[str, ...]:
        """Optional names this torch does not have (so their ops cannot run here either)."""
        return tuple(self._absent) + (self._parent.absent if self._parent else ())

    def __contains__(self, target) -> bool:
        key = resolve(target)
        return self.lookup(key) is not None or self.is_zero_cost(key)


def _shape(x) -> tuple[int, ...]:
    return tuple(x.shape) if isinstance(x, torch.Tensor) else ()


def _numel(shape) -> int:
    return math.prod(shape) if shape else 1


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


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


def _heads(q_batch, k_batch) -> int:
    """Batch × heads of an attention: q's batch dims against k's, dim by dim. Grouped-query attention
    (Hq a multiple of Hkv) shares each key/value head among Hq/Hkv query heads: Hq heads of work."""
    q_batch, k_batch = tuple(q_batch), tuple(k_batch)
    n = max(len(q_batch), len(k_batch))
    q_batch = (1,) * (n - len(q_batch)) + q_batch
    k_batch = (1,) * (n - len(k_batch)) + k_batch
    return _numel(tuple(max(a, b) for a, b in zip(q_batch, k_batch)))


def sdpa_macs(q_shape, k_shape, v_shape) -> int:
    """[.., L, E] queries, [.., S, E] keys, [.., S, Ev] values: QKᵀ then (softmax)·V,
    B·H·L·S·E + B·H·L·S·Ev, H the query heads (grouped-query attention included)."""
    *bh, L, E = q_shape
    S = k_shape[-2]
    Ev = v_shape[-1]
    b = _heads(bh, k_shape[:-2])
    return b * L * S * (E + Ev)


def blhe_attention_macs(q_shape, k_shape, v_shape, q_lens=None, k_lens=None) -> int:
    """Attention in the (B, L, H, E) layout of `_flash_attention_forward`/`_efficient_attention_forward`:
    B·H·L·S·(E + Ev). Variable-length (nested) batches pack every sequence into one [total, H, E]
    tensor: Σ_b L_b·S_b·H·(E + Ev)."""
    Ev = v_shape[-1]
    if q_lens is not None:
        H, E = q_shape[-2], q_shape[-1]
        return sum(lq * lk for lq, lk in zip(q_lens, k_lens)) * H * (E + Ev)
    B, L, H, E = q_shape
    S = k_shape[1]
    return B * L * S * H * (E + Ev)


def linear_out_macs(x_shape, out_shape) -> int:
    """Any matmul-like op whose input is [.., K] and output [.., N]: one MAC per output element and
    input feature (weight-packed and quantized linears, whose weight layout is the kernel's own)."""
    return _numel(out_shape) * x_shape[-1]


# ---- the default registry -----------------------------------------------------------------------

def _build_default() -> FormulaRegistry:
    reg = FormulaRegistry()
    r = reg.register

    @r(aten.convolution, aten._convolution)
    def _convolution(x, w, bias, stride, padding, dilation, transposed, output_padding, groups, *rest,
                     out_val, **kw) -> Cost:
        true_macs, per_out = conv_macs(_shape(x), _shape(w), _shape(out_val), bool(transposed), int(groups))
        return Cost(macs=true_macs, vm_macs=per_out, bias=_numel(_shape(out_val)) if bias is not None else 0)

    @r(aten.mm, aten.bmm, aten._int_mm, aten._scaled_mm)
    def _mm(a, b, *rest, out_val, **kw) -> Cost:
        # _int_mm: int8 × int8 → int32; _scaled_mm: fp8 × fp8 with scales (their bias, if any, is an add)
        return Cost(macs=matmul_macs(_shape(a), _shape(b)))

    @r(aten.mv)
    def _mv(a, v, *, out_val, **kw) -> Cost:
        return Cost(macs=_numel(_shape(a)))

    @r(aten.addmv)
    def _addmv(bias, a, v, *rest, out_val, **kw) -> Cost:
        return Cost(macs=_numel(_shape(a)), bias=_numel(_shape(out_val)))

    @r(aten.dot, aten.vdot)
    def _dot(a, b, *, out_val, **kw) -> Cost:
        return Cost(macs=_numel(_shape(a)))

    @r(aten.addmm, aten._addmm_activation, aten.baddbmm, aten.addbmm)
    def _addmm(bias, a, b, *rest, out_val, **kw) -> Cost:
        # addbmm: Σ_b a[b] @ b[b] + bias, the batch reduced into one [n, m] output. _addmm_activation:
        # Linear + GELU/ReLU fused (CUDA); the activation is not a MAC.
        return Cost(macs=matmul_macs(_shape(a), _shape(b)), bias=_numel(_shape(out_val)))

    @r(aten._weight_int8pack_mm, aten._weight_int4pack_mm, aten._weight_int4pack_mm_for_cpu,
       "aten::_weight_int4pack_mm_with_scales_and_zeros", "aten::_dyn_quant_matmul_4bit",
       aten.fbgemm_linear_int8_weight, aten.fbgemm_linear_fp16_weight, optional=True)
    def _packed_linear(x, *rest, out_val, **kw) -> Cost:
        # weight-only-quantised / packed linears: the packed weight's shape is the kernel's layout, so
        # the count comes from the input's features and the output.
        return Cost(macs=linear_out_macs(_shape(x), _shape(_first(out_val))))

    @r(aten._scaled_dot_product_flash_attention_for_cpu, aten._scaled_dot_product_flash_attention,
       aten._scaled_dot_product_efficient_attention, aten._scaled_dot_product_cudnn_attention,
       "aten::_scaled_dot_product_fused_attention_overrideable", optional=True)
    def _sdpa(q, k, v, *rest, out_val, **kw) -> Cost:
        # The fused kernels also run one softmax over the [.., L, S] scores: counted as softmax elements,
        # as the unfused (math) path counts its `_softmax`/`_safe_softmax`.
        *bh, L, _ = _shape(q)
        scores = _heads(bh, _shape(k)[:-2]) * L * _shape(k)[-2]
        return Cost(macs=sdpa_macs(_shape(q), _shape(k), _shape(v)), elements=scores, element_kind="softmax")

    def _lens(cum):
        # the sequence lengths of a variable-length batch are values (offsets): a meta tensor has none
        # and raises here, so the op is recorded uncounted with that reason.
        offsets = cum.tolist()
        return [b - a for a, b in zip(offsets[:-1], offsets[1:])]

    @r(aten._flash_attention_forward)
    def _flash_fwd(q, k, v, cum_q, cum_k, *rest, out_val, **kw) -> Cost:
        ql = kl = None
        if cum_q is not None:
            ql, kl = _lens(cum_q), _lens(cum_k)
        macs = blhe_attention_macs(_shape(q), _shape(k), _shape(v), ql, kl)
        return Cost(macs=macs)

    @r(aten._efficient_attention_forward)
    def _efficient_fwd(q, k, v, bias, cu_q=None, cu_k=None, *rest, out_val, **kw) -> Cost:
        cu_q, cu_k = kw.get("cu_seqlens_q", cu_q), kw.get("cu_seqlens_k", cu_k)
        ql = kl = None
        if cu_q is not None:
            ql, kl = _lens(cu_q), _lens(cu_k)
        if ql is not None and len(_shape(q)) == 4:      # [1, total, H, E]: packed varlen batch
            q, k, v = (t[0] for t in (q, k, v))
        return Cost(macs=blhe_attention_macs(_shape(q), _shape(k), _shape(v), ql, kl))

    # Quantised kernels of torch.ao.nn.quantized (integer decoders): the weight is in a packed-params
    # object whose unpack() gives the float/int weight and the bias.
    def _qconv(transposed: bool) -> Formula:
        def fn(x, packed, *rest, out_val, **kw) -> Cost:
            w, b = packed.unpack()
            true_macs, per_out = conv_macs(_shape(x), _shape(w), _shape(out_val), transposed,
                                           int(packed.groups()))
            return Cost(macs=true_macs, vm_macs=per_out, bias=_numel(_shape(out_val)) if b is not None else 0)
        fn.__name__ = "quantized_conv_transpose" if transposed else "quantized_conv"
        return fn

    for name in ("conv1d", "conv2d", "conv3d", "conv1d_relu", "conv2d_relu", "conv3d_relu",
                 "conv2d_add", "conv2d_add_relu"):
        reg.add(f"quantized::{name}", _qconv(False), optional=True)
    for name in ("conv_transpose1d", "conv_transpose2d", "conv_transpose3d"):
        reg.add(f"quantized::{name}", _qconv(True), optional=True)

    def _qlinear(x, packed, *rest, out_val, **kw) -> Cost:
        w, b = packed.unpack()
        return Cost(macs=linear_out_macs(_shape(x), _shape(out_val)),
                    bias=_numel(_shape(out_val)) if b is not None else 0)

    for name in ("linear", "linear_relu", "linear_dynamic", "linear_relu_dynamic", "linear_dynamic_fp16",
                 "linear_relu_dynamic_fp16"):
        reg.add(f"quantized::{name}", _qlinear, optional=True)

    def _element(kind: str) -> Formula:
        def fn(*args, out_val, **kw) -> Cost:
            return Cost(elements=_numel(_shape(_first(out_val))), element_kind=kind)
        fn.__name__ = f"element_{kind}"
        return fn

    def _reduction(*args, out_val, **kw) -> Cost:
        # A reduction reads every input element once.
        return Cost(elements=_numel(_shape(args[0])) if args else 0, element_kind="reduction")

    for kind, names in (("activation", _ACTIVATIONS), ("normalization", _NORMALIZATION),
                        ("arithmetic", _ARITHMETIC), ("resample", _RESAMPLE), ("softmax", _SOFTMAX)):
        fn = _element(kind)
        for n in names:
            reg.add(n, fn)
        for n in _OPTIONAL.get(kind, ()):
            reg.add(n, fn, optional=True)
    for n in _REDUCTION:
        reg.add(n, _reduction)
    for n in _OPTIONAL.get("reduction", ()):
        reg.add(n, _reduction, optional=True)

    reg.add_zero_cost(*_ZERO_COST_NAMES)
    reg.add_zero_cost(*_OPTIONAL_ZERO_COST, optional=True)

    def _l2_normalize(x, p=2.0, dim=1, eps=1e-12, out=None, *, out_val) -> Cost:
        # The reference software's `Norm` hook: one operation per output element of an L2 norm.
        return Cost(elements=_numel(_shape(out_val)) if float(p) == 2.0 else 0, element_kind="l2norm")

    reg.register_function(F.normalize, _l2_normalize)
    return reg.freeze()


_ACTIVATIONS = ["relu", "relu_", "leaky_relu", "leaky_relu_", "gelu", "gelu_", "sigmoid", "sigmoid_", "tanh",
                "tanh_", "silu", "silu_", "hardtanh", "hardtanh_", "elu", "elu_", "softplus", "hardswish",
                "hardswish_", "hardsigmoid", "hardsigmoid_", "mish", "mish_", "prelu", "_prelu_kernel",
                "threshold", "threshold_", "glu", "celu", "celu_", "selu", "selu_", "log_sigmoid_forward",
                "relu6", "rrelu_with_noise", "softshrink", "hardshrink",
                "quantized::relu6", "quantized::hardswish", "quantized::leaky_relu", "quantized::sigmoid"]
_NORMALIZATION = ["native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
                  "_native_batch_norm_legit_functional", "native_layer_norm", "native_group_norm", "rsqrt",
                  "rsqrt_", "sqrt", "sqrt_", "quantized::batch_norm2d"]
# max/min: the packet (max.dim, max.default, …) is a reduction; the `.other` overload is element-wise.
_ARITHMETIC = ["add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "pow", "pow_", "neg", "neg_", "abs",
               "abs_", "exp", "exp_", "exp2", "log", "log_", "log2", "log1p", "expm1", "reciprocal",
               "reciprocal_", "round", "round_", "floor", "floor_", "ceil", "ceil_", "trunc", "clamp", "clamp_",
               "clamp_min", "clamp_max", "clamp_min_", "clamp_max_", "maximum", "minimum", "max.other",
               "min.other", "sign", "sign_", "erf", "erfc", "erfinv", "lerp", "addcmul", "addcdiv", "where",
               "rsub", "remainder", "fmod", "floor_divide", "eq", "ne", "lt", "le", "gt", "ge", "logical_and",
               "logical_or", "logical_not", "bitwise_and", "bitwise_or", "bitwise_not", "bitwise_xor",
               "bitwise_left_shift", "bitwise_right_shift", "__rshift__", "__lshift__",
               "sin", "cos", "atan2", "hypot", "square", "frac", "masked_fill", "masked_fill_", "fill_",
               "isnan", "isinf", "nan_to_num", "copysign", "xlogy", "sgn", "tril", "triu", "scatter_add",
               "index_add", "index_add_", "scatter_reduce", "fill", "logit", "sinh", "cosh", "tan",
               "atan", "asin", "acos", "heaviside", "float_power", "quantized::add", "quantized::add_relu",
               "quantized::mul"]
_RESAMPLE = ["upsample_bilinear2d", "upsample_nearest2d", "upsample_bicubic2d", "upsample_nearest1d",
             "upsample_linear1d", "upsample_trilinear3d", "upsample_nearest3d", "_upsample_bilinear2d_aa",
             "_upsample_bicubic2d_aa", "_upsample_nearest_exact2d", "pixel_shuffle", "pixel_unshuffle",
             "grid_sampler_2d", "avg_pool2d", "max_pool2d_with_indices", "adaptive_avg_pool2d",
             "_adaptive_avg_pool2d", "avg_pool1d", "avg_pool3d", "max_pool3d_with_indices",
             "adaptive_max_pool2d", "_adaptive_avg_pool3d"]
_SOFTMAX = ["_softmax", "_log_softmax", "_safe_softmax"]
_REDUCTION = ["sum", "mean", "amax", "amin", "max", "min", "prod", "var", "std", "var_mean", "std_mean",
              "norm", "linalg_vector_norm", "cumsum", "cumprod", "argmax", "argmin", "all", "any", "logsumexp",
              "sort", "topk", "median", "kthvalue", "aminmax", "nansum"]
# Ops some torch versions lack (registered when present; `DEFAULT.absent` lists the others).
_OPTIONAL = {"normalization": ["_fused_rms_norm"], "arithmetic": [], "reduction": []}

# Ops that create, view, move or reorder data, or keep books: no arithmetic. Listed so that
# "uncounted" means an op nobody looked at, not one known to cost nothing.
_ZERO_COST_NAMES = [
    "view", "_unsafe_view", "reshape", "expand", "permute", "transpose", "t", "squeeze", "unsqueeze", "flatten",
    "unflatten", "select", "slice", "narrow", "index", "index_select", "gather", "scatter", "index_put",
    "index_put_", "_index_put_impl_", "cat", "stack", "split", "split_with_sizes", "chunk", "unbind",
    "clone", "copy_", "contiguous", "detach", "alias", "lift_fresh", "lift_fresh_copy", "empty",
    "empty_like", "empty_strided", "new_empty", "new_empty_strided", "zeros", "zeros_like", "ones",
    "ones_like", "eye", "full", "full_like", "new_zeros", "new_ones", "new_full", "arange", "linspace", "scalar_tensor",
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
    "detach_copy", "t_copy", "transpose_copy", "unsqueeze_copy", "squeeze_copy",
    "slice_copy", "select_copy", "unbind_copy", "split_with_sizes_copy", "as_strided_copy",
    "repeat_interleave", "_assert_tensor_metadata", "sym_constrain_range_for_size",
    # metadata queries (what FlopCounterMode leaves to the tensor itself)
    "is_contiguous", "is_strides_like_format", "is_non_overlapping_and_dense", "size", "stride", "numel",
    "storage_offset",
    # quantisation: a scale and a rounding per element, the data path's format change, not the model's
    "quantize_per_tensor", "quantize_per_channel", "dequantize", "_empty_affine_quantized",
    "_empty_per_channel_affine_quantized", "int_repr", "q_scale", "q_zero_point", "q_per_channel_scales",
    "q_per_channel_zero_points", "q_per_channel_axis", "qscheme", "quantized::cat",
    # book-keeping of torch.autograd.profiler.record_function and DataParallel
    "profiler::_record_function_enter", "profiler::_record_function_enter_new", "profiler::_record_function_exit",
    # TorchScript's tensor attribute reads
    "prim::device", "prim::layout", "prim::dtype", "prim::data",
]
_OPTIONAL_ZERO_COST = ["sym_is_contiguous", "_functional_sym_constrain_range", "_functional_assert_async",
                       "_functional_assert_scalar",
                       # torchvision's import asks for its CUDA build (a metadata query; counted programs import it)
                       "torchvision::_cuda_version"]

DEFAULT = _build_default()


def cost_of(func, args, kwargs, out, registry: FormulaRegistry = DEFAULT) -> Cost | None:
    """The cost of one executed op, or None when no formula covers it (an uncounted op). A formula's
    exception propagates: the engine records it as the reason the op is uncounted."""
    fn = registry.lookup(func)
    if fn is None:
        return Cost() if registry.is_zero_cost(func) else None
    cost = fn(*args, **kwargs, **{OUTPUT_KW: out})
    return cost if isinstance(cost, Cost) else Cost(macs=int(cost))
