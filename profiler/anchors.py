"""The anchor networks of compressed-domain tasks: what a task costs in the pixel domain.

JPEG AI's evaluation of compressed-domain tasks compares the latent pipeline with an *original anchor*
(the anchor network on the original picture) and a *decoded anchor* (the same network on the decoded
picture). The networks here are the ones the conditions name, built with **random initialisation**: no
weights are downloaded, and complexity does not depend on the weights' values; task *accuracy* is not
measured. Every anchor takes a picture `[1, 3, H, W]` in [0, 1].

| kind | anchor | what, pinned |
|---|---|---|
| classification | `resnet50` | torchvision ResNet-50 (v1.5: stride 2 in the 3×3 conv of a bottleneck), preprocessing resize of the shorter side to 256 (bilinear, antialiased), centre crop 224, ImageNet mean/std; 4,089,184,256 strict MACs at 224×224 whatever the picture |
| super-resolution | `wdsr-a-x4` | WDSR-A (Yu et al. 2018, "Wide activation…"), ×4: 16 residual blocks, 32 features, expansion 4 (128 wide), 3×3 convs, 5×5 skip conv, pixel shuffle; weight normalisation folded (inference) |
| super-resolution | `lanczos3-x4` | Lanczos-3 up-sampling ×4, separable, 6 taps per direction, as real multiply-accumulates (batched matmuls the counter prices: taps × outputs) |
| denoising | `dncnn-17` | DnCNN (Zhang et al. 2017), colour: 17 conv 3×3 layers of 64 features, batch norm in the 15 middle ones, residual output |
| foreground | `lraspp-mobilenetv3` | torchvision LR-ASPP on MobileNetV3-Large (Howard et al. 2019), 2 classes (foreground, background), on the whole picture |

The choices for denoising and foreground extraction are the suite's (the conditions name none): DnCNN is
the usual denoising reference, LR-ASPP a light segmentation network of a maintained library.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE, CROP = 256, 224
SR_SCALE = 4


# -- classification: ResNet-50 ------------------------------------------------------------------------

class ResNet50Anchor(nn.Module):
    """torchvision's ResNet-50 behind its evaluation preprocessing: shorter side to 256, centre crop 224."""

    def __init__(self):
        super().__init__()
        from torchvision.models import resnet50

        self.net = resnet50(weights=None).eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    @staticmethod
    def preprocess_size(h: int, w: int) -> tuple[int, int]:
        """(H, W) after resizing the shorter side to 256 (torchvision's Resize(256) rounding)."""
        if h <= w:
            return RESIZE, int(RESIZE * w / h)
        return int(RESIZE * h / w), RESIZE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        size = self.preprocess_size(h, w)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        top, left = (size[0] - CROP) // 2, (size[1] - CROP) // 2
        x = x[..., top: top + CROP, left: left + CROP]
        return self.net((x - self.mean) / self.std)


# -- super-resolution: WDSR-A ×4 and Lanczos-3 --------------------------------------------------------

WDSR_CONFIG = {"scale": SR_SCALE, "n_resblocks": 16, "n_feats": 32, "expansion": 4, "kernel_size": 3,
               "skip_kernel_size": 5}
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


class _WideBlock(nn.Module):
    def __init__(self, feats: int, expansion: int, k: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(feats, feats * expansion, k, padding=k // 2), nn.ReLU(inplace=True),
                                  nn.Conv2d(feats * expansion, feats, k, padding=k // 2))

    def forward(self, x):
        return x + self.body(x)


class WDSR(nn.Module):
    """WDSR-A as in the authors' code (wdsr_a.py): head conv, wide-activation residual blocks, tail conv
    to 3·s² channels and pixel shuffle, plus a 5×5 skip conv from the input, also shuffled."""

    def __init__(self, scale: int = 4, n_resblocks: int = 16, n_feats: int = 32, expansion: int = 4,
                 kernel_size: int = 3, skip_kernel_size: int = 5):
        super().__init__()
        k, ks = kernel_size, skip_kernel_size
        self.register_buffer("mean", torch.tensor(DIV2K_MEAN).view(1, 3, 1, 1))
        self.head = nn.Conv2d(3, n_feats, k, padding=k // 2)
        self.body = nn.Sequential(*[_WideBlock(n_feats, expansion, k) for _ in range(n_resblocks)])
        self.tail = nn.Sequential(nn.Conv2d(n_feats, 3 * scale * scale, k, padding=k // 2), nn.PixelShuffle(scale))
        self.skip = nn.Sequential(nn.Conv2d(3, 3 * scale * scale, ks, padding=ks // 2), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - self.mean
        return self.tail(self.body(self.head(x))) + self.skip(x) + self.mean


def wdsr_macs_per_input_pixel(scale: int = 4, n_resblocks: int = 16, n_feats: int = 32, expansion: int = 4,
                              kernel_size: int = 3, skip_kernel_size: int = 5) -> int:
    """Multiply-accumulates of WDSR-A per low-resolution pixel (every conv keeps the input's size)."""
    k2, s2 = kernel_size ** 2, scale * scale
    return (3 * n_feats * k2 + n_resblocks * 2 * n_feats * n_feats * expansion * k2
            + n_feats * 3 * s2 * k2 + 3 * 3 * s2 * skip_kernel_size ** 2)


LANCZOS_A = 3


def _lanczos(x: np.ndarray, a: int = LANCZOS_A) -> np.ndarray:
    return np.where(np.abs(x) < a, np.sinc(x) * np.sinc(x / a), 0.0)


@functools.lru_cache(maxsize=64)
def _taps(n_in: int, n_out: int, a: int) -> tuple[np.ndarray, np.ndarray]:
    if n_out < n_in:
        raise ValueError("lanczos_taps up-samples only")
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) * n_in / n_out - 0.5
    first = np.floor(pos).astype(np.int64) - (a - 1)
    idx = first[:, None] + np.arange(2 * a)[None, :]
    w = _lanczos(pos[:, None] - idx, a) * ((idx >= 0) & (idx < n_in))
    w = w / w.sum(axis=1, keepdims=True)
    return np.clip(idx, 0, n_in - 1), w.astype(np.float32)


def lanczos_taps(n_in: int, n_out: int, a: int = LANCZOS_A) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices [n_out, 2a], weights [n_out, 2a]) of Lanczos-a up-sampling from n_in to n_out samples:
    pixel centres aligned (x_in = (x_out + ½)·n_in/n_out − ½), 2a taps around each; taps beyond a border get
    weight 0 and the others are normalised to sum 1 (as PIL's LANCZOS filter). Constants of the sizes (computed once, with numpy: not picture work)."""
    idx, w = _taps(n_in, n_out, a)
    return torch.from_numpy(idx), torch.from_numpy(w)


class Lanczos3(nn.Module):
    """Separable Lanczos-3 up-sampling by `scale`: each pass gathers the 6 taps of every output sample and
    multiplies-accumulates them with a batched matmul (one batch per output position), so the counter
    prices exactly taps × outputs: 6·C·(H_in·W_out + H_out·W_out) MACs. No aten op does Lanczos."""

    def __init__(self, scale: int = SR_SCALE, a: int = LANCZOS_A):
        super().__init__()
        self.scale, self.a = scale, a

    def _pass(self, x: torch.Tensor, n_out: int) -> torch.Tensor:
        """Up-sample the last dimension of x [..., n_in] to n_out."""
        idx, w = lanczos_taps(x.shape[-1], n_out, self.a)
        lead = x.shape[:-1]
        g = x.reshape(-1, x.shape[-1])[:, idx.to(x.device)]                     # [B, n_out, taps]
        out = torch.bmm(g.permute(1, 0, 2), w.to(x.device, x.dtype).unsqueeze(-1))  # [n_out, B, 1]
        return out.squeeze(-1).permute(1, 0).reshape(*lead, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = self._pass(x, w * self.scale)                                        # rows: [N, C, H, sW]
        x = self._pass(x.transpose(-1, -2), h * self.scale).transpose(-1, -2)    # columns: [N, C, sH, sW]
        return x


def lanczos_macs(c: int, h: int, w: int, scale: int = SR_SCALE, a: int = LANCZOS_A) -> int:
    """Multiply-accumulates of separable Lanczos-a up-sampling of a C×H×W picture: taps × outputs per pass."""
    return 2 * a * c * (h * w * scale + h * scale * w * scale)


# -- denoising: DnCNN ---------------------------------------------------------------------------------

DNCNN_CONFIG = {"depth": 17, "features": 64, "channels": 3}


class DnCNN(nn.Module):
    """DnCNN: conv+ReLU, (depth − 2) × conv+BN+ReLU, conv; the network predicts the noise (x − n)."""

    def __init__(self, depth: int = 17, features: int = 64, channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, features, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(features, features, 3, padding=1, bias=False), nn.BatchNorm2d(features),
                       nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(features, channels, 3, padding=1, bias=False))
        self.body = nn.Sequential(*layers)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)


def dncnn_macs_per_pixel(depth: int = 17, features: int = 64, channels: int = 3) -> int:
    return 9 * (channels * features + (depth - 2) * features * features + features * channels)


# -- foreground: LR-ASPP MobileNetV3-Large ------------------------------------------------------------

class ForegroundAnchor(nn.Module):
    """torchvision's LR-ASPP MobileNetV3-Large with 2 classes on the ImageNet-normalised picture."""

    def __init__(self):
        super().__init__()
        from torchvision.models.segmentation import lraspp_mobilenet_v3_large

        self.net = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=2).eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)["out"]


# -- the registry -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Anchor:
    name: str
    kind: str
    description: str
    build: Callable[[], nn.Module]


ANCHORS: dict[str, tuple[Anchor, ...]] = {
    "classification": (
        Anchor("resnet50", "classification",
               "torchvision ResNet-50 v1.5, resize 256 + centre crop 224, random init", ResNet50Anchor),),
    "super-resolution": (
        Anchor("wdsr-a-x4", "super-resolution",
               "WDSR-A x4 (16 blocks, 32 features, expansion 4), random init", lambda: WDSR(**WDSR_CONFIG)),
        Anchor("lanczos3-x4", "super-resolution", "Lanczos-3 x4, separable, 6 taps per direction", Lanczos3)),
    "denoising": (
        Anchor("dncnn-17", "denoising", "DnCNN colour (17 layers, 64 features), random init",
               lambda: DnCNN(**DNCNN_CONFIG)),),
    "foreground": (
        Anchor("lraspp-mobilenetv3", "foreground",
               "torchvision LR-ASPP MobileNetV3-Large, 2 classes, random init", ForegroundAnchor),),
}


def anchors_for(kind: str) -> tuple[Anchor, ...]:
    return ANCHORS[kind]


def downscale(x: torch.Tensor, factor: int = SR_SCALE) -> torch.Tensor:
    """The low-resolution picture of the super-resolution conditions: bicubic ×1/factor (antialiased, as
    PIL's and MATLAB's imresize), clamped to [0, 1]; sizes rounded down, the picture cropped to a multiple
    of `factor` first so that the ×factor output has exactly the cropped original's size."""
    h, w = (x.shape[-2] // factor) * factor, (x.shape[-1] // factor) * factor
    x = x[..., :h, :w]
    return F.interpolate(x, size=(h // factor, w // factor), mode="bicubic", align_corners=False,
                         antialias=True).clamp(0, 1)
