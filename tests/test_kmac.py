"""kMAC/px of the tiny codec's real encode() and decode() on an odd image size, against the analytic
formula written out here (not the tool's output)."""

import torch

from profiler.counting import count_call
from profiler.counting.conventions import kmac_per_pixel
from profiler.submission import load_entry, load_submission

H, W = 33, 47                      # odd: the codec pads to 34×48, kMAC/px divides by 33×47
HP, WP = 34, 48
YH, YW = HP // 2, WP // 2           # 17×24 latent

CONV = YH * YW * 4 * 3 * 9          # Conv2d(3→4, k3, s2): per output position C_in·k² MACs per channel
LINEAR = YH * YW * 4 * 4            # Linear(4→4) at every latent position
DECONV = YH * YW * 4 * 3 * 16       # ConvTranspose2d(4→3, k4, s2) over its *input* positions
FCONV = HP * WP * 3 * 3 * 9         # F.conv2d(3→3, k3) at the padded output size


def _codec(tiny_dir):
    sub = load_submission(tiny_dir)
    return load_entry(sub)(sub.rates[0], torch.device("cpu"))


def test_encoder_macs_exact(tiny_dir):
    codec = _codec(tiny_dir)
    x = torch.rand(1, 3, H, W)
    bits, res = count_call(codec.encode, x, roots={"encoder": codec.encoder}, root_name="encoder")
    assert res.macs == CONV + LINEAR == 50592
    assert kmac_per_pixel(res.macs, W, H) == (CONV + LINEAR) / (W * H) / 1000
    assert res.complete, res.uncounted


def test_decoder_macs_exact_including_functional_conv(tiny_dir):
    codec = _codec(tiny_dir)
    x = torch.rand(1, 3, H, W)
    bits = codec.encode(x)
    x_hat, res = count_call(codec.decode, bits, roots={"decoder": codec.decoder}, root_name="decoder")
    assert tuple(x_hat.shape) == (1, 3, H, W)
    assert res.macs == LINEAR + DECONV + FCONV == 6528 + 78336 + 132192
    kmac = kmac_per_pixel(res.macs, W, H)
    assert abs(kmac - 0.139946) < 1e-6   # 217 056 MACs / 1 551 px / 1000
    # Attribution: the transposed conv is its module's; the functional conv is the decoder's own.
    assert res.per_module["decoder.deconv"].macs == DECONV
    assert res.per_module["decoder"].macs == FCONV
