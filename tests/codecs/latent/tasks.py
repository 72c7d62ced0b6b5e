"""Task heads of the latent fixture codec (tests/test_tasks.py counts them by hand).

classification: Conv2d(8→16, k3, p1) on ŷ, ReLU, global mean, Linear(16→10).
super-resolution: Conv2d(8→3·16², k1) on ŷ of the ×4-down-scaled picture, PixelShuffle(16): ×16 from ŷ
(ŷ is at 1/4 of the low-resolution picture, the output at 4× it).
"""

import torch
from torch import nn


def build_task(task, rate, device):
    c_in = int(task.options.get("channels", 8))
    if task.kind == "classification":
        net = nn.Sequential(nn.Conv2d(c_in, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(16, 10))
    elif task.kind == "super-resolution":
        net = nn.Sequential(nn.Conv2d(c_in, 3 * 256, 1), nn.PixelShuffle(16))
    elif task.kind == "denoising":
        net = nn.Conv2d(c_in, 3, 1)
    else:
        raise ValueError(f"no {task.kind} head")
    if task.state_dict is not None:
        net.load_state_dict(task.state_dict)
    return net.to(device)
