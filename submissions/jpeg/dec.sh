#!/bin/sh
# JPEG anchor decoder: dec.sh PYTHON BITSTREAM OUTPUT.png
set -eu
py=$1 src=$2 out=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
djpeg -pnm -outfile "$tmp/out.ppm" "$src"
"$py" -c 'import sys; from PIL import Image; Image.open(sys.argv[1]).convert("RGB").save(sys.argv[2], "PNG")' "$tmp/out.ppm" "$out"
