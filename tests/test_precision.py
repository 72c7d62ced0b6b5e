"""Declared precision: parsing, and the parameters that contradict it, by name."""

import pytest
import torch
from torch import nn

from profiler.precision import Precision, check_tensor, offending_parameters, parse_precision


@pytest.mark.parametrize("text,expected", [
    ("float32", Precision("float", 32)), ("float16", Precision("float", 16)), ("bfloat16", Precision("bfloat", 16)),
    ("int8", Precision("int", 8)), ("uint4", Precision("uint", 4)), ("fixed12", Precision("fixed", 12)),
    ("int64", Precision("int", 64)),
])
def test_known_forms(text, expected):
    assert parse_precision(text) == expected


@pytest.mark.parametrize("text", ["int", "fixed", "float", "float8", "int0", "int65", "double", "fp32", "", "Int8"])
def test_unknown_forms(text):
    assert parse_precision(text) is None


def test_float_declarations():
    f32 = torch.tensor([0.1, 0.2])
    assert check_tensor(f32, parse_precision("float32")) is None
    assert check_tensor(f32.half(), parse_precision("float32")) is None       # narrower is representable
    assert "float32" in check_tensor(f32, parse_precision("float16"))          # declared float16, holds float32
    assert "float64" in check_tensor(f32.double(), parse_precision("float32"))
    assert check_tensor(f32.bfloat16(), parse_precision("bfloat16")) is None
    assert check_tensor(f32.half(), parse_precision("bfloat16")) is not None


def test_integer_declarations():
    int8 = parse_precision("int8")
    assert check_tensor(torch.tensor([-128, 127], dtype=torch.int8), int8) is None
    # Integer values stored in a float tensor are int8 if they are integers in [-128, 127] …
    assert check_tensor(torch.tensor([-128.0, 3.0, 127.0]), int8) is None
    # … but not 0.5, and not 128.
    assert "not int8 integers" in check_tensor(torch.tensor([0.5, 1.0]), int8)
    assert check_tensor(torch.tensor([128.0]), int8) is not None
    assert check_tensor(torch.tensor([-1.0]), parse_precision("uint8")) is not None
    assert check_tensor(torch.tensor([255.0]), parse_precision("uint8")) is None
    assert check_tensor(torch.tensor([1000], dtype=torch.int32), int8) is not None


def test_fixed_point_declarations():
    fixed8 = parse_precision("fixed8")
    # 0.375 = 3 / 2³ and -1.5 = -12 / 2³: fits 8 bits with 3 fractional bits.
    assert check_tensor(torch.tensor([0.375, -1.5, 15.875]), fixed8) is None
    # 0.1 is not a multiple of any 2^-f: not fixed point.
    assert check_tensor(torch.tensor([0.1]), fixed8) is not None
    # 200 needs more than 8 signed bits.
    assert check_tensor(torch.tensor([200.0]), fixed8) is not None


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.integer = nn.Conv2d(2, 2, 1, bias=False)
        self.integer.weight.data = torch.tensor([[[[3.0]], [[-7.0]]], [[[0.0]], [[127.0]]]])
        self.real = nn.Linear(2, 2)          # random float32 weights and bias


def test_offending_parameters_are_named():
    torch.manual_seed(0)
    found = offending_parameters(_Net(), "int8")
    assert found["count"] == 2 and found["numel"] == 4 + 2
    assert [p["name"] for p in found["parameters"]] == ["real.weight", "real.bias"]
    assert all(p["dtype"] == "float32" for p in found["parameters"])
    assert offending_parameters(_Net(), "float32") == {"count": 0, "numel": 0, "parameters": []}
    assert "error" in offending_parameters(_Net(), "int")


def test_shared_parameter_counted_once():
    lin = nn.Linear(2, 2)
    both = nn.ModuleDict({"a": lin, "b": lin})
    assert offending_parameters(both, "int8")["count"] == 2   # weight and bias once each
