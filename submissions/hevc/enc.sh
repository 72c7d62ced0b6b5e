#!/bin/sh
# HEVC intra anchor encoder: enc.sh PYTHON INPUT.png BITSTREAM TARGET_BPP WIDTH HEIGHT
# ffmpeg converts the PNG to Y'CbCr 4:4:4, BT.709 full range, 8 bits; x265 codes one intra picture
# (Main 4:4:4 8 profile, preset medium with full RDOQ, fixed QP, chroma QP offsets +12, psycho-visual tuning off, no SEI), raw Annex B.
# Per picture: the smallest QP (0..51: a first guess from QP 51's size, bracketed, then bisected) whose bitstream fits TARGET_BPP × W × H / 8 bytes; where
# QP 51 does not fit, the RD lambda at QP 51 is scaled up (x265 --lambda-file, like HM's LambdaModifier),
# the smallest factor in 1..256 that fits (10 bisection steps on its log).
set -eu
py=$1 src=$2 out=$3 bpp=$4 w=$5 h=$6
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ffmpeg -nostdin -v error -y -i "$src" -vf "scale=out_color_matrix=bt709:out_range=full:flags=accurate_rnd+full_chroma_int" \
  -pix_fmt yuv444p -f rawvideo "$tmp/in.yuv"
budget=$(awk -v b="$bpp" -v w="$w" -v h="$h" 'BEGIN { printf "%d", b * w * h / 8 }')
code() {  # code QP [LAMBDA_FACTOR] → bytes of the bitstream (kept as $tmp/c.hevc)
  lam=""
  if [ $# -gt 1 ]; then
    # x265's default tables times the factor: lambda = 2^(q/6 − 2), lambda2 = 0.85 · lambda² (70 QPs each)
    awk -v k="$2" 'BEGIN { for (q = 0; q < 70; q++) printf "%.6f ", k * 2 ^ (q / 6 - 2); printf "\n";
                           for (q = 0; q < 70; q++) printf "%.6f ", 0.85 * (k * 2 ^ (q / 6 - 2)) ^ 2; printf "\n" }' > "$tmp/lambda.txt"
    lam="--lambda-file $tmp/lambda.txt"
  fi
  # shellcheck disable=SC2086
  x265 --input "$tmp/in.yuv" --input-res "${w}x${h}" --input-csp i444 --fps 1 --frames 1 --profile main444-8 \
    --preset medium --rdoq-level 2 --qp "$1" --cbqpoffs 12 --crqpoffs 12 --psy-rd 0 --psy-rdoq 0 --range full --colormatrix bt709 \
    --colorprim bt709 --transfer bt709 --no-info --log-level error $lam -o "$tmp/c.hevc" >/dev/null 2>&1
  wc -c < "$tmp/c.hevc"
}
keep() { cp "$tmp/c.hevc" "$tmp/best.hevc"; }
s51=$(code 51)
if [ "$s51" -le "$budget" ]; then
  keep
  # Start near the answer (the rate about halves every 6 QP), bracket it in steps of 4, then bisect: the
  # low-QP encodes are the slow ones, so few of them are made.
  q=$(awk -v b="$budget" -v s="$s51" 'BEGIN { q = int(51 - 6 * log(b / s) / log(2)); print (q < 0 ? 0 : q > 50 ? 50 : q) }')
  hi=51 lo=-1                                   # invariant: QP hi fits, QP lo does not (or is below range)
  while [ "$q" -lt "$hi" ]; do
    if [ "$(code "$q")" -le "$budget" ]; then keep; hi=$q; q=$((q - 4)); [ $q -ge 0 ] || q=0
      [ $hi -gt 0 ] || break
    else lo=$q; break; fi
  done
  [ $hi -gt 0 ] || lo=-1
  while [ $((hi - lo)) -gt 1 ]; do
    mid=$(((lo + hi) / 2))
    if [ "$(code $mid)" -le "$budget" ]; then keep; hi=$mid; else lo=$mid; fi
  done
else
  lo=1 hi=256
  [ "$(code 51 $hi)" -le "$budget" ] || { echo "enc.sh: QP 51 with lambda × $hi does not fit $budget bytes" >&2; exit 1; }
  keep
  n=0
  while [ $n -lt 10 ]; do                       # invariant: factor hi fits, factor lo does not
    mid=$(awk -v a="$lo" -v b="$hi" 'BEGIN { printf "%.6f", sqrt(a * b) }')
    if [ "$(code 51 "$mid")" -le "$budget" ]; then keep; hi=$mid; else lo=$mid; fi
    n=$((n + 1))
  done
fi
cp "$tmp/best.hevc" "$out"
