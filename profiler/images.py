"""The test image set: scikit-image's bundled photographs (no download), or a directory of PNGs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .conditions import ImageSpec
from .errors import InputError

# Bundled with scikit-image (no network): name → loader name in skimage.data.
BUILTIN = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "hubble_deep_field", "retina")


@dataclass(frozen=True)
class TestImage:
    __test__ = False  # not a pytest test class
    name: str
    pixels: np.ndarray          # uint8 [H, W, 3]

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    def tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """float32 [1, 3, H, W] in [0, 1]."""
        t = torch.from_numpy(np.ascontiguousarray(self.pixels)).permute(2, 0, 1).float().div_(255.0)
        return t.unsqueeze(0).to(device)


def _to_rgb(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InputError(where, None, f"expected an RGB image, got shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        if arr.dtype == np.uint16:
            arr = (arr.astype(np.float64) / 257.0).round().astype(np.uint8)
        else:
            raise InputError(where, None, f"expected 8-bit samples, got {arr.dtype}")
    return arr


def builtin_image(name: str) -> TestImage:
    import skimage.data

    if name not in BUILTIN:
        raise InputError("images.builtin", None, f"unknown built-in image {name!r} (known: {', '.join(BUILTIN)})")
    return TestImage(name, _to_rgb(getattr(skimage.data, name)(), name))


def load_images(spec: ImageSpec) -> list[TestImage]:
    """The images of a spec, in a stable order."""
    if spec.source == "builtin":
        images = [builtin_image(n) for n in spec.builtin]
    else:
        from PIL import Image

        folder = Path(spec.source)
        if not folder.is_dir():
            raise InputError(folder, "images", "image directory not found")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
        if not files:
            raise InputError(folder, "images", "no .png files in the directory")
        images = []
        for p in files:
            try:
                with Image.open(p) as im:
                    arr = np.asarray(im.convert("RGB") if im.mode not in ("RGB", "I;16") else im)
            except Exception as exc:
                raise InputError(p, None, f"cannot read image ({exc})") from None
            images.append(TestImage(p.stem, _to_rgb(arr, str(p))))
    if spec.limit is not None:
        images = images[: spec.limit]
    return images
