#!/bin/sh
# JPEG 2000 anchor decoder: dec.sh PYTHON BITSTREAM OUTPUT.png (OpenJPEG's opj_decompress)
set -eu
py=$1 src=$2 out=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$src" "$tmp/in.j2k"
opj_decompress -i "$tmp/in.j2k" -o "$tmp/out.ppm" >/dev/null 2>&1
"$py" -c 'import sys; from PIL import Image; Image.open(sys.argv[1]).convert("RGB").save(sys.argv[2], "PNG")' "$tmp/out.ppm" "$out"
