"""The formula registry: overload keys, refused registrations, a counter's own mapping, the vm Norm rule."""

import pytest
import torch
import torch.nn.functional as F

from profiler.counting import count_call
from profiler.counting.conventions import figure
from profiler.counting.formulas import DEFAULT, OUTPUT_KW, Cost, FormulaRegistry, RegistryError

aten = torch.ops.aten


def _count(fn, *args, registry=None):
    with torch.no_grad():
        return count_call(fn, *args, registry=registry)[1]


def test_duplicate_registration_refused():
    reg = FormulaRegistry()
    reg.add(aten.mm, lambda *a, out_val, **k: Cost(macs=1))
    with pytest.raises(RegistryError, match="twice"):
        reg.add("aten::mm", lambda *a, out_val, **k: Cost(macs=2))      # same op, spelled as a name
    reg.add(aten.max, lambda *a, out_val, **k: Cost())
    reg.add(aten.max.other, lambda *a, out_val, **k: Cost())            # an overload is its own key
    with pytest.raises(RegistryError, match="twice"):
        reg.add("max.other", lambda *a, out_val, **k: Cost())
    reg.add_zero_cost(aten.view)
    with pytest.raises(RegistryError, match="twice"):
        reg.add(aten.view, lambda *a, out_val, **k: Cost())


def test_unknown_name_refused_at_registration():
    reg = FormulaRegistry()
    with pytest.raises(RegistryError, match="no op aten::convolution2"):
        reg.add("aten::convolution2", lambda *a, out_val, **k: Cost())
    with pytest.raises(RegistryError, match="no overload"):
        reg.add("aten::max.nonsense", lambda *a, out_val, **k: Cost())
    with pytest.raises(RegistryError):
        DEFAULT.with_mapping({"aten::not_an_op": lambda *a, out_val, **k: Cost()})
    # declared optional: skipped and listed, not silent
    reg.add("aten::not_in_this_torch", lambda *a, out_val, **k: Cost(), optional=True)
    assert reg.absent == ("aten::not_in_this_torch",)


def test_default_registry_is_frozen():
    with pytest.raises(RegistryError, match="frozen"):
        DEFAULT.add(aten.cos, lambda *a, out_val, **k: Cost())


def test_max_other_and_max_dim_priced_differently():
    a, b = torch.rand(3, 4), torch.rand(3, 4)
    other = _count(torch.max, a, b)        # element-wise: one per output element
    assert other.total().elements == {"arithmetic": 12}
    dim = _count(lambda: torch.max(a, dim=1))   # a reduction reads every input element
    assert dim.total().elements == {"reduction": 12}
    full = _count(lambda: torch.max(torch.rand(5, 6)))
    assert full.total().elements.get("reduction") == 30
    assert DEFAULT.lookup(aten.min.other) is not DEFAULT.lookup(aten.min.dim)


def test_custom_mapping_used_by_one_counter_only():
    a = torch.rand(4, 5)
    mine = DEFAULT.with_mapping({aten.add: lambda *args, out_val, **kw: Cost(macs=5)})
    assert _count(lambda: a + a, registry=mine).macs == 5
    assert _count(lambda: a + a).macs == 0                  # the default counter is untouched
    assert _count(lambda: a + a).total().elements == {"arithmetic": 20}
    # the mapping replaces only what it names
    assert _count(torch.mm, a, a.t(), registry=mine).macs == 4 * 5 * 4
    with pytest.raises(RegistryError, match="twice"):
        DEFAULT.with_mapping({aten.add: lambda *a, out_val, **k: Cost(), "aten::add": lambda *a, out_val, **k: Cost()})


def test_output_keyword_is_used_by_no_op_schema():
    # formulas get the output as `out_val`: no op (aten, quantized, profiler) may have an argument so named
    names = set()
    for ns in ("aten", "quantized", "profiler"):
        for packet_name in dir(getattr(torch.ops, ns)):
            try:
                packet = getattr(getattr(torch.ops, ns), packet_name)
                overloads = packet.overloads()
            except Exception:
                continue
            for o in overloads:
                names.update(a.name for a in getattr(packet, o)._schema.arguments)
    assert len(names) > 500 and OUTPUT_KW not in names


def test_l2_normalize_vm_counts_one_per_output_element():
    x = torch.rand(2, 16, 5, 5)
    res = _count(F.normalize, x)
    t = res.total()
    assert res.macs == 0
    # the reference software's Norm hook: one per output element (2·16·5·5 = 800), and nothing else
    # in vm (the norm's reduction, clamp and division are element operations outside vm)
    assert t.elements["l2norm"] == 800
    assert figure(t, "vm") == 800
    assert t.elements["reduction"] == 800 and t.elements["arithmetic"] == 50 + 800   # clamp_min on the [2,1,5,5] norm, div
    # p = 1 is not an L2 normalisation
    assert _count(lambda: F.normalize(x, p=1.0)).total().elements.get("l2norm", 0) == 0
