#!/bin/sh
# HEVC intra anchor decoder: dec.sh PYTHON BITSTREAM OUTPUT.png (ffmpeg's HEVC decoder; Y'CbCr 4:4:4 BT.709
# full range → 8-bit RGB)
set -eu
py=$1 src=$2 out=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$src" "$tmp/in.hevc"
ffmpeg -nostdin -v error -y -f hevc -i "$tmp/in.hevc" \
  -vf "scale=in_color_matrix=bt709:in_range=full:flags=accurate_rnd+full_chroma_int" -pix_fmt rgb24 "$tmp/out.png"
"$py" -c 'import sys; from PIL import Image; Image.open(sys.argv[1]).convert("RGB").save(sys.argv[2], "PNG")' "$tmp/out.png" "$out"
