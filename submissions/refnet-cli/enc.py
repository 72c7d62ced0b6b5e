"""RefNet's encoder as a program: python enc.py INPUT.png BITSTREAM --bpp TARGET"""

import argparse

import torch

import _refnet

p = argparse.ArgumentParser()
p.add_argument("input")
p.add_argument("bitstream")
p.add_argument("--bpp", type=float, required=True)
a = p.parse_args()
torch.set_num_threads(1)
codec = _refnet.build(a.bpp)
with torch.no_grad():
    bits = codec.encode(_refnet.read_png(a.input))
with open(a.bitstream, "wb") as fh:
    fh.write(bits)
