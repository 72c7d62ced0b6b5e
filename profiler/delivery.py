"""A proponent's delivery: bitstreams, decoded pictures and the model's hashes (`jpegai-profile verify`).

Layout (a public contract, submissions/README.md):
- `BITSTREAMS/<target>/<stem>.bin`: `<target>` a target rate written as a decimal (`0.25`, `0.250` and
  `.25` are one rate), `<stem>` the original picture's file stem;
- `DECODED/<target>/<stem>.png`: 8-bit RGB, the float reconstruction rounded as clamp(0, 1) · 255,
  round half to even (what `profile --write-bitstreams` writes); DECODED may be BITSTREAMS itself;
- `ORIGINALS/<stem>.png`;
- `--model-sha256 FILE`: `sha256sum` lines (`<hex>  <path relative to the submission directory>`).

Everything here is read and checked in the parent, before any worker runs; a problem with one file is one
line naming it, recorded for that item or for the delivery, never a stop.
"""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path

import numpy as np

from .errors import InputError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_RATE_RE = re.compile(r"^(\d+(\.\d*)?|\.\d+)$")
ROUNDING = "clamp(0, 1) · 255, rounded half to even"


def rate_folder_name(target_bpp: float) -> str:
    """The folder `profile --write-bitstreams` writes for a target rate: `0.25`, `0.03`, `1`."""
    return f"{target_bpp:g}"


def parse_rate(name: str) -> float | None:
    return float(name) if _RATE_RE.match(name) else None


def scan(bitstreams: Path, decoded: Path | None, originals: list[str], targets: list[float]
         ) -> tuple[dict[float, Path], dict[float, Path | None], list[dict]]:
    """The rate folders of a delivery matched to the submission's target rates.

    Returns ({target: bitstream folder}, {target: decoded folder or None}, problems) where each problem is
    {"file", "message"}: a folder that is no target rate of the submission, two folders for one rate, a
    file that is neither `<original>.bin` nor (beside it) `<original>.png`.
    """
    if not bitstreams.is_dir():
        raise InputError(bitstreams, "--bitstreams", "folder not found")
    if decoded is not None and not decoded.is_dir():
        raise InputError(decoded, "--decoded", "folder not found")
    problems: list[dict] = []
    found: dict[float, Path] = {}
    names = set(originals)

    def match(rate: float) -> float | None:
        return next((t for t in targets if abs(t - rate) <= 1e-9 * max(1.0, abs(t))), None)

    for entry in sorted(bitstreams.iterdir()):
        if not entry.is_dir():
            problems.append({"file": str(entry), "message": "stray file (expected only <target>/ folders)"})
            continue
        rate = parse_rate(entry.name)
        target = match(rate) if rate is not None else None
        if target is None:
            problems.append({"file": str(entry), "message": "unknown rate folder (the submission's target rates: "
                             + ", ".join(f"{t:g}" for t in targets) + ")"})
            continue
        if target in found:
            problems.append({"file": str(entry), "message": f"a second folder for {target:g} bpp "
                             f"(also {found[target].name})"})
            continue
        found[target] = entry
        for f in sorted(entry.iterdir()):
            beside_png = decoded is None or decoded.resolve() == bitstreams.resolve()
            if f.is_file() and f.stem in names and (f.suffix == ".bin" or (f.suffix == ".png" and beside_png)):
                continue
            problems.append({"file": str(f), "message": "stray file (expected <original>.bin"
                             + (", <original>.png" if beside_png else "") + f"; originals: {', '.join(sorted(names))})"})
    dec: dict[float, Path | None] = {}
    for target, folder in found.items():
        if decoded is None or decoded.resolve() == bitstreams.resolve():
            dec[target] = folder
        else:
            cand = [d for d in decoded.iterdir() if d.is_dir() and parse_rate(d.name) is not None
                    and match(parse_rate(d.name)) == target]
            dec[target] = cand[0] if cand else None
    return found, dec, problems


def read_decoded(path: Path, width: int, height: int) -> np.ndarray:
    """A submitted decoded picture as uint8 [H, W, 3]; ValueError (naming the file) unless it is an 8-bit RGB
    PNG of the original's size. The header is read first: a 16-bit PNG is refused, never narrowed."""
    from PIL import Image

    head = path.read_bytes()[:33]
    if len(head) < 33 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        raise ValueError(f"{path}: not a PNG")
    w, h, depth, colour = struct.unpack(">IIBB", head[16:26])
    if depth != 8 or colour != 2:
        kind = {0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}.get(colour, f"colour type {colour}")
        raise ValueError(f"{path}: {depth}-bit {kind} PNG, expected 8-bit RGB")
    if (w, h) != (width, height):
        raise ValueError(f"{path}: {w}×{h}, the original is {width}×{height}")
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as exc:
        raise ValueError(f"{path}: cannot be decoded ({type(exc).__name__}: {exc})") from None
    return arr


def difference(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    """(largest absolute difference in code values, PSNR in dB between the two 8-bit pictures; inf if equal)."""
    d = a.astype(np.int32) - b.astype(np.int32)
    mse = float(np.mean(d.astype(np.float64) ** 2))
    psnr = float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
    return int(np.abs(d).max()) if d.size else 0, psnr


def check_model(directory: Path, listing: Path) -> dict:
    """--model-sha256: every listed file hashes as listed, and every file of the submission is listed."""
    if not listing.is_file():
        raise InputError(listing, "--model-sha256", "file not found")
    problems = []
    listed: dict[str, str] = {}
    for n, line in enumerate(listing.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = re.match(r"^([0-9a-fA-F]{64}) [ *](.+)$", line.strip())
        if not m:
            raise InputError(listing, f"line {n}", "expected '<sha256>  <path>' (sha256sum's format)")
        listed[str(Path(m.group(2)))] = m.group(1).lower()
    for rel, want in sorted(listed.items()):
        p = (directory / rel).resolve()
        if not p.is_relative_to(directory.resolve()):
            problems.append(f"{rel}: outside the submission directory")
        elif not p.is_file():
            problems.append(f"{rel}: listed but missing")
        else:
            h = hashlib.sha256()
            with p.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
            if h.hexdigest() != want:
                problems.append(f"{rel}: sha256 {h.hexdigest()[:12]}…, listed {want[:12]}…")
    for p in sorted(directory.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            rel = str(p.relative_to(directory))
            if rel not in listed:
                problems.append(f"{rel}: not listed")
    return {"file": str(listing), "listed": len(listed), "matched": not problems, "problems": problems}


def model_listing(directory: Path) -> str:
    """The `--model-sha256` listing of a submission as it is now (sha256sum's format)."""
    lines = []
    for p in sorted(directory.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            lines.append(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(directory)}")
    return "\n".join(lines) + "\n"
