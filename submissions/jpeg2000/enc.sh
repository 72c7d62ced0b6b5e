#!/bin/sh
# JPEG 2000 anchor encoder: enc.sh PYTHON INPUT.png BITSTREAM TARGET_BPP WIDTH HEIGHT
# OpenJPEG's opj_compress (irreversible 9/7 wavelet, RGB→YCC, one quality layer, raw J2K codestream). The
# compression ratio is searched per picture for the largest codestream that fits TARGET_BPP × W × H / 8 bytes:
# start at 24 / TARGET_BPP, bracket, then 14 bisection steps on the log of the ratio.
set -eu
py=$1 src=$2 out=$3 bpp=$4 w=$5 h=$6
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" -c 'import sys; from PIL import Image; Image.open(sys.argv[1]).convert("RGB").save(sys.argv[2], "PPM")' "$src" "$tmp/in.ppm"
budget=$(awk -v b="$bpp" -v w="$w" -v h="$h" 'BEGIN { printf "%d", b * w * h / 8 }')
size() {  # size RATIO → bytes of the codestream at that ratio (kept as $tmp/r.j2k)
  opj_compress -i "$tmp/in.ppm" -o "$tmp/r.j2k" -r "$1" -I -mct 1 >/dev/null 2>&1
  wc -c < "$tmp/r.j2k"
}
keep() { cp "$tmp/r.j2k" "$tmp/best.j2k"; }
fits=$(awk -v b="$bpp" 'BEGIN { printf "%.6f", 24 / b }')          # a ratio whose file fits
i=0
while [ "$(size "$fits")" -gt "$budget" ]; do
  fits=$(awk -v r="$fits" 'BEGIN { printf "%.6f", r * 1.25 }'); i=$((i + 1))
  [ $i -lt 60 ] || { echo "enc.sh: no ratio fits $budget bytes" >&2; exit 1; }
done
keep
over=$(awk -v r="$fits" 'BEGIN { printf "%.6f", r / 1.25 }')         # a ratio whose file does not fit
i=0
while [ "$(awk -v r="$over" 'BEGIN { print (r > 1) }')" = 1 ] && [ "$(size "$over")" -le "$budget" ]; do
  keep; fits=$over; over=$(awk -v r="$over" 'BEGIN { printf "%.6f", r / 1.25 }'); i=$((i + 1))
  [ $i -lt 60 ] || break
done
n=0
while [ $n -lt 14 ]; do                     # invariant: ratio `fits` fits, ratio `over` does not
  mid=$(awk -v a="$fits" -v b="$over" 'BEGIN { printf "%.6f", sqrt(a * b) }')
  if [ "$(size "$mid")" -le "$budget" ]; then keep; fits=$mid; else over=$mid; fi
  n=$((n + 1))
done
cp "$tmp/best.j2k" "$out"
