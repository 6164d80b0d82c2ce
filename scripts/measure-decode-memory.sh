#!/usr/bin/env bash
# Peak memory (RSS) of compressing the largest inputs the processor accepts by default, one
# process per input: a 40 MP 16-bit PNG, a 40 MP JPEG (baseline and progressive) and an
# animated GIF, beside the peak the processor budgets for each (IMAGE_DECODE_MEMORY_MB). Run from the
# checkout: scripts/measure-decode-memory.sh. The figures are per image being compressed;
# the processor compresses IMAGE_CPU_WORKERS images at once (docs/deploy.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
command -v /usr/bin/time >/dev/null || apt_install time
command -v jpegtran >/dev/null || apt_install libjpeg-turbo-progs
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(make -s -f Makefile --eval='print-target: ; @echo $(CARGO_TARGET_DIR)' print-target)}
cargo build -p image-processor --examples
bin="$CARGO_TARGET_DIR/debug/examples"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin/worst_inputs" "$work" >/dev/null
jpegtran -progressive -outfile "$work/jpeg-40mp-progressive.jpg" "$work/jpeg-40mp.jpg"
printf '| input | bytes | budgeted peak | peak RSS |\n|---|---|---|---|\n'
for file in "$work"/*; do
  { RUNS=1 /usr/bin/time -f '%M' "$bin/compress" "$file" >"$work/.out"; } 2>"$work/.rss"
  budget=$(grep -o 'budgeted peak [0-9]* MB' "$work/.out" | grep -o '[0-9]* MB')
  peak_kb=$(tail -1 "$work/.rss")
  printf '| %s | %s | %s | %s MB |\n' "$(basename "$file")" "$(stat -c %s "$file")" "$budget" "$((peak_kb / 1024))"
done
