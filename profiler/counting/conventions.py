"""How a counted call becomes one figure.

- `strict`: multiply-accumulates only, one per weight use; transposed convs over input positions; no
  bias, no activation, no element operation. The default, and the figure JPEG AI's kMAC/px asks for.
- `vm`: what the JPEG AI reference software's counter (ptflops 0.6.5 with its hooks) reports: transposed
  convs counted per *output* position, + 1 per output element that gets a bias, + 1 per activation and
  normalisation element, + 1 per output element of an L2 normalisation (`F.normalize`, the reference
  software's `Norm` hook) (complexity-facts.md §2).
"""

from __future__ import annotations

from .engine import ScopeCost

VM_ELEMENT_KINDS = ("activation", "normalization", "l2norm")


def strict(cost: ScopeCost) -> int:
    return cost.macs


def vm(cost: ScopeCost) -> int:
    return cost.vm_macs + cost.bias + sum(cost.elements.get(k, 0) for k in VM_ELEMENT_KINDS)


CONVENTIONS = {"strict": strict, "vm": vm}


def figure(cost: ScopeCost, convention: str) -> int:
    return CONVENTIONS[convention](cost)


def kmac_per_pixel(macs: int, width: int, height: int) -> float:
    """kMAC/px: MACs / (W×H of the decoded picture, original size, not padded, not ×3) / 1000."""
    return macs / (width * height) / 1000.0
