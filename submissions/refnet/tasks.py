"""RefNet's compressed-domain task networks (submission.toml `[[tasks]]`): they run on the dequantised
latent ŷ that `RefNetCodec.decode_latents` returns (128 channels at 1/16 of the padded picture), never on
the decoded picture, and never through the synthesis transform g_s.

- `LatentClassifier`, after Torfason et al. 2018 ("Towards image understanding from deep compression
  without decoding", ICLR): a ResNet whose first stages are dropped, the latent taking their place.
  Here: `blocks` basic residual blocks of `width` channels at the latent's resolution, one basic block
  of stride 2 to 2·width channels (1×1 projection on its shortcut), global average pooling and a
  linear layer to `classes` logits.
- `LatentSuperResolution`: ŷ of the ×4-down-scaled picture → the picture at 4× its low-resolution size,
  i.e. ×64 from the latent: six stages of (3×3 conv to 4·c channels, ReLU, pixel shuffle ×2) with the
  channels `stages`, then a 3×3 conv to RGB. Its output is the padded picture's size (the codec pads to a
  multiple of 64): the work on padding is counted.

No trained weights: random initialisation (complexity does not depend on the values; the suite says
that task accuracy was not measured).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

LATENT_CHANNELS = 128


class LatentClassifier(nn.Module):
    def __init__(self, channels: int = LATENT_CHANNELS, width: int = 128, blocks: int = 2, classes: int = 1000):
        super().__init__()
        stem = [] if channels == width else [nn.Conv2d(channels, width, 1, bias=False), nn.BatchNorm2d(width),
                                             nn.ReLU(inplace=True)]
        down = nn.Sequential(nn.Conv2d(width, 2 * width, 1, stride=2, bias=False), nn.BatchNorm2d(2 * width))
        self.features = nn.Sequential(*stem, *[BasicBlock(width, width) for _ in range(blocks)],
                                      BasicBlock(width, 2 * width, stride=2, downsample=down))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(y_hat)), 1))


class LatentSuperResolution(nn.Module):
    def __init__(self, channels: int = LATENT_CHANNELS, stages: tuple[int, ...] = (96, 64, 48, 32, 24, 16)):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = channels
        for c in stages:
            layers += [nn.Conv2d(c_in, 4 * c, 3, padding=1), nn.ReLU(inplace=True), nn.PixelShuffle(2)]
            c_in = c
        layers.append(nn.Conv2d(c_in, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        return self.body(y_hat)


def build_task(task, rate, device: torch.device | str = "cpu") -> nn.Module:
    """One task network per rate point (RefNet has one model: the same network at every rate)."""
    opts = dict(task.options)
    if task.kind == "classification":
        net = LatentClassifier(width=int(opts.get("width", 128)), blocks=int(opts.get("blocks", 2)),
                               classes=int(opts.get("classes", 1000)))
    elif task.kind == "super-resolution":
        net = LatentSuperResolution(stages=tuple(int(c) for c in opts.get("stages", (96, 64, 48, 32, 24, 16))))
    else:
        raise ValueError(f"RefNet has no {task.kind} head")
    if task.state_dict is not None:
        net.load_state_dict(task.state_dict)
    return net.to(device).eval()
