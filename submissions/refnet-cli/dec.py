"""RefNet's decoder as a program: python dec.py BITSTREAM OUTPUT.png"""

import argparse

import torch

import _refnet

p = argparse.ArgumentParser()
p.add_argument("bitstream")
p.add_argument("output")
a = p.parse_args()
torch.set_num_threads(1)
codec = _refnet.build(0.0)   # the decoder reads everything it needs from the bitstream
with open(a.bitstream, "rb") as fh:
    bits = fh.read()
with torch.no_grad():
    x_hat = codec.decode(bits)
_refnet.write_png(x_hat, a.output)
