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

# Limits on a test picture's declared size, checked from the PNG header before any pixel is decoded: a
# few bytes can declare 60000×60000 (10 GiB of samples). 16384 per side covers every JPEG AI test picture
# (at most 8K); the pixel budget (64 Mpx, 8192×8192) stays below Pillow's decompression-bomb threshold.
MAX_SIDE = 16384
MAX_PIXELS = 8192 * 8192
# Pillow modes of the 8-bit and 16-bit PNGs the loader turns into 8-bit RGB (grey, grey+alpha, palette,
# RGB, RGBA; 16-bit grey). 1-bit pictures and anything else are refused.
PNG_MODES = ("L", "LA", "P", "PA", "RGB", "RGBA", "I;16")


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


def _png_files(folder: Path) -> list[Path]:
    """The .png files of a picture folder, sorted; every refusal is one line naming the file."""
    if not folder.is_dir():
        raise InputError(folder, "images", "image directory not found")
    root = folder.resolve()
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    except OSError as exc:
        raise InputError(folder, "images", f"cannot list the directory ({exc.strerror or exc})") from None
    if not files:
        raise InputError(folder, "images", "no .png files in the directory")
    names: dict[str, Path] = {}
    for p in files:
        try:
            target = p.resolve()
        except (OSError, RuntimeError):  # a link loop
            raise InputError(p, None, "is a link that cannot be resolved") from None
        if not target.is_relative_to(root):
            raise InputError(p, None, f"is a link to {target}, outside the picture folder")
        if not p.is_file():
            raise InputError(p, None, "is not a regular file")
        if p.stem in names:
            raise InputError(p, None, f"same picture name {p.stem!r} as {names[p.stem].name}")
        names[p.stem] = p
    return files


def _read_png(p: Path, decode: bool = True) -> np.ndarray | None:
    """A PNG's samples as Pillow decodes them, after checking the header (format, declared size, mode).

    Any failure is an InputError naming the file. With `decode=False`, only the header is read.
    """
    from PIL import Image

    try:
        size = p.stat().st_size
    except OSError as exc:
        raise InputError(p, None, f"cannot read image ({exc.strerror or exc})") from None
    if size == 0:
        raise InputError(p, None, "is empty (0 bytes)")
    # Our own size limits are applied below, before decoding; Pillow's bomb check would only say "too big".
    bomb, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(p, formats=["PNG"]) as im:
            w, h = im.size
            if w < 1 or h < 1 or w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
                raise InputError(p, None, f"declares {w}×{h} pixels (at most {MAX_SIDE} per side and "
                                          f"{MAX_PIXELS:,} pixels in all)")
            if im.mode not in PNG_MODES:
                raise InputError(p, None, f"unsupported PNG mode {im.mode!r} (expected 8-bit or 16-bit "
                                          "grey, palette, RGB or RGBA)")
            if not decode:
                return None
            im.load()
            return np.asarray(im.convert("RGB") if im.mode not in ("RGB", "I;16") else im)
    except InputError:
        raise
    except Image.UnidentifiedImageError:
        raise InputError(p, None, "not a PNG file") from None
    except Exception as exc:  # truncated or corrupt data: OSError, SyntaxError, zlib.error, ValueError
        raise InputError(p, None, f"cannot decode PNG ({type(exc).__name__}: {exc})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = bomb


def check_images(spec: ImageSpec, config: str | Path = "profile.toml") -> list[str]:
    """Validate the picture set before any worker starts; the names of the pictures that will be used.

    Built-in names must be known, unique and at least one. A folder must hold at least one .png; every
    .png is a regular file inside the folder (a link leaving it is refused), no two map to one picture
    name (`a.png`, `a.PNG`), each header declares a supported mode and a size within MAX_SIDE/MAX_PIXELS,
    and the pictures that will be measured decode completely. Each refusal is one InputError line.
    """
    if spec.source == "builtin":
        if not spec.builtin:
            raise InputError(config, "images.builtin", "must name at least one picture (nothing would be measured)")
        for i, name in enumerate(spec.builtin):
            if name not in BUILTIN:
                raise InputError(config, f"images.builtin[{i}]",
                                 f"unknown built-in picture {name!r} (known: {', '.join(BUILTIN)})")
            if name in spec.builtin[:i]:
                raise InputError(config, f"images.builtin[{i}]", f"names {name!r} twice")
        names = list(spec.builtin)
    else:
        files = _png_files(Path(spec.source))
        used = files[: spec.limit] if spec.limit is not None else files
        for p in files:
            arr = _read_png(p, decode=p in used)
            if arr is not None:
                _to_rgb(arr, str(p))
        names = [p.stem for p in files]
    return names[: spec.limit] if spec.limit is not None else names


def load_images(spec: ImageSpec) -> list[TestImage]:
    """The images of a spec, in a stable order."""
    if spec.source == "builtin":
        images = [builtin_image(n) for n in spec.builtin]
    else:
        files = _png_files(Path(spec.source))
        files = files[: spec.limit] if spec.limit is not None else files
        images = [TestImage(p.stem, _to_rgb(_read_png(p), str(p))) for p in files]
    if spec.limit is not None:
        images = images[: spec.limit]
    return images
