#!/bin/sh
# JPEG anchor encoder: enc.sh PYTHON INPUT.png BITSTREAM TARGET_BPP WIDTH HEIGHT
# The largest libjpeg-turbo quality (1..100, bisection) whose file fits TARGET_BPP × W × H / 8 bytes
# (4:2:0, optimised Huffman tables); quality 1 when none fits.
set -eu
py=$1 src=$2 out=$3 bpp=$4 w=$5 h=$6
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" -c 'import sys; from PIL import Image; Image.open(sys.argv[1]).convert("RGB").save(sys.argv[2], "PPM")' "$src" "$tmp/in.ppm"
budget=$(awk -v b="$bpp" -v w="$w" -v h="$h" 'BEGIN { printf "%d", b * w * h / 8 }')
size() { cjpeg -quality "$1" -optimize -sample 2x2 -outfile "$tmp/q$1.jpg" "$tmp/in.ppm"; wc -c < "$tmp/q$1.jpg"; }
lo=1 hi=100
if [ "$(size 100)" -le "$budget" ]; then cp "$tmp/q100.jpg" "$out"; exit 0; fi
if [ "$(size 1)" -gt "$budget" ]; then cp "$tmp/q1.jpg" "$out"; exit 0; fi
while [ $((hi - lo)) -gt 1 ]; do            # invariant: lo fits, hi does not
  mid=$(((lo + hi) / 2))
  if [ "$(size $mid)" -le "$budget" ]; then lo=$mid; else hi=$mid; fi
done
cp "$tmp/q$lo.jpg" "$out"
