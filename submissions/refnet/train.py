"""Train RefNet (codec.py) on CPU and write weights/refnet.safetensors.

    .venv/bin/python submissions/refnet/train.py [--steps 8000] [--lr 2e-4] [--threads 2] [--out PATH]

Training photographs — bundled with packages the suite installs, none of them a default test image
(astronaut, coffee, chelsea, rocket):
- scikit-image: motorcycle_left, motorcycle_right (a stereo pair, 2964×2000 and 2964×2000 colour),
  hubble_deep_field (colour), retina (colour fundus photograph), ihc (colour micrograph), camera,
  coins and moon (greyscale, replicated to three channels);
- matplotlib: grace_hopper (colour portrait).
Each is also used at 1/2 and 1/4 size (Lanczos) where that is still ≥ 256 px; crops of 128×128 are drawn
at random (image chosen in proportion to its area), flipped left-right half the time.

Variable rate: each crop of a batch gets its own quantiser step q = 2^u, u uniform in [−2.5, 4.5], and
the loss R + λ(q)·255²·MSE with λ(q) = LAMBDA_REF / q² (MSE at a step q grows as q², so every step
weighs alike). Adam, learning rate 2e-4, ÷4 for the last 20 % of steps; the entropy bottleneck's
quantiles by their own auxiliary loss.

Afterwards: the CDF tables are computed once (`update`) and stored with the weights, and the hyper
decoder is integerised (codec.IntegerHyperSynthesis) with activation scales calibrated on 64 crops.
Only what coding needs is written (the float h_s is not). Seeded: a rerun on the same machine and
torch version gives the same weights.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from codec import RefNet, step  # noqa: E402

LAMBDA_REF = 0.004
LOG2_Q = (-2.5, 4.5)
CROP = 128
BATCH = 8

SKIMAGE = ["motorcycle_left.png", "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png",
           "camera.png", "coins.png", "moon.png"]
MATPLOTLIB = ["grace_hopper.jpg"]


def training_images() -> list[tuple[str, np.ndarray]]:
    import matplotlib.cbook
    import skimage.data

    paths = [Path(skimage.data.__file__).parent / n for n in SKIMAGE]
    paths += [Path(matplotlib.cbook.get_sample_data(n, asfileobj=False)) for n in MATPLOTLIB]
    out = []
    for path in paths:
        img = Image.open(path).convert("RGB")
        for factor in (1, 2, 4):
            w, h = img.width // factor, img.height // factor
            if min(w, h) < 256:
                break
            scaled = img if factor == 1 else img.resize((w, h), Image.LANCZOS)
            out.append((f"{path.name}/{factor}", np.asarray(scaled, dtype=np.float32) / 255.0))
    return out


class Crops:
    def __init__(self, images: list[tuple[str, np.ndarray]], seed: int):
        self.images = [a for _, a in images]
        area = np.array([a.shape[0] * a.shape[1] for a in self.images], dtype=np.float64)
        self.p = area / area.sum()
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> torch.Tensor:
        out = np.empty((n, 3, CROP, CROP), dtype=np.float32)
        for i in range(n):
            a = self.images[self.rng.choice(len(self.images), p=self.p)]
            top = self.rng.integers(0, a.shape[0] - CROP + 1)
            left = self.rng.integers(0, a.shape[1] - CROP + 1)
            crop = a[top:top + CROP, left:left + CROP]
            if self.rng.random() < 0.5:
                crop = crop[:, ::-1]
            out[i] = crop.transpose(2, 0, 1)
        return torch.from_numpy(out)


def train(steps: int, seed: int = 0, lr: float = 2e-4) -> tuple[RefNet, Crops]:
    torch.manual_seed(seed)
    images = training_images()
    print(f"{len(images)} training images (with scales): {', '.join(n for n, _ in images)}")
    data = Crops(images, seed)
    model = RefNet()
    model.train()
    main = [p for n, p in model.named_parameters() if not n.endswith("quantiles") and not n.startswith("h_s_int")]
    aux = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    opt = torch.optim.Adam(main, lr=lr)
    aux_opt = torch.optim.Adam(aux, lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for i in range(steps):
        if i == int(steps * 0.8):
            for g in opt.param_groups:
                g["lr"] = lr / 4
        x = data.batch(BATCH)
        u = torch.rand(BATCH, generator=gen) * (LOG2_Q[1] - LOG2_Q[0]) + LOG2_Q[0]
        q = 2.0 ** u
        out = model(x, q)
        pixels = x.shape[-2] * x.shape[-1]
        bits = sum(-torch.log2(lk).flatten(1).sum(1) for lk in out["likelihoods"].values())
        bpp = bits / pixels
        mse = ((out["x_hat"] - x) ** 2).flatten(1).mean(1)
        lam = LAMBDA_REF / q ** 2
        loss = (bpp + lam * 255 ** 2 * mse).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main, 1.0)
        opt.step()
        aux_opt.zero_grad()
        model.aux_loss().backward()
        aux_opt.step()
        if i % 250 == 0 or i == steps - 1:
            psnr = (10 * torch.log10(1 / mse.clamp_min(1e-10))).mean().item()
            print(f"step {i:6d}  {time.perf_counter() - t0:7.1f} s  loss {loss.item():.3f}  "
                  f"bpp {bpp.mean().item():.3f}  psnr {psnr:.2f}", flush=True)
    print(f"trained {steps} steps in {time.perf_counter() - t0:.0f} s")
    return model, data


@torch.no_grad()
def finish(model: RefNet, data: Crops) -> dict[str, torch.Tensor]:
    """CDF tables, the integer hyper decoder, and the state dict to ship."""
    model.eval()
    model.update(force=True)
    x = data.batch(64)
    z = model.h_a(model.g_a(x))
    med = model.entropy_bottleneck._get_medians()
    z_hat = torch.round(z - med) + med
    model.h_s_int.load_from(model.h_s, z_hat)
    ref = model.h_s(z_hat)
    got = model.h_s_int(z_hat)
    rel = ((got - ref).abs().max() / ref.abs().max()).item()
    print(f"integer hyper decoder: largest difference to the float one {rel:.2e} of its range")
    return {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("h_s.")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--out", type=Path, default=HERE / "weights" / "refnet.safetensors")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from safetensors.torch import save_file

    model, data = train(args.steps, args.seed, args.lr)
    state = finish(model, data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.out), metadata={"steps": str(args.steps), "seed": str(args.seed), "lr": str(args.lr),
                                              "lambda_ref": str(LAMBDA_REF), "log2_q": str(LOG2_Q)})
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 2 ** 20:.1f} MiB, {sum(v.numel() for v in state.values()):,} values)")


if __name__ == "__main__":
    main()
