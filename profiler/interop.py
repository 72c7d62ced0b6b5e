"""Device interoperability: bitstreams encoded on one device, decoded on another.

Foundation stub: the compliance issue implements it.
"""

from __future__ import annotations


def measure_interop(codec, build, rate, images, cond, devices, result) -> None:
    result.not_measured["interop"] = "device interoperability is not measured yet"
