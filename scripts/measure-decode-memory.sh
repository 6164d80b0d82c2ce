#!/usr/bin/env bash
# Peak memory (RSS) of compressing the largest inputs the processor accepts by default, one
# process per input: a 40 MP 16-bit PNG, a 40 MP JPEG and an animated GIF. Run from the
# checkout: scripts/measure-decode-memory.sh. The figures are per image being compressed;
# the processor compresses IMAGE_CPU_WORKERS images at once (docs/deploy.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
command -v /usr/bin/time >/dev/null || apt_install time
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(make -s -f Makefile --eval='print-target: ; @echo $(CARGO_TARGET_DIR)' print-target)}
cargo build --quiet -p image-processor --examples
bin="$CARGO_TARGET_DIR/debug/examples"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin/worst_inputs" "$work" >/dev/null
printf '| input | bytes | peak RSS |\n|---|---|---|\n'
for file in "$work"/*; do
  peak_kb=$( { RUNS=1 /usr/bin/time -f '%M' "$bin/compress" "$file" >/dev/null; } 2>&1 | tail -1)
  printf '| %s | %s | %s MB |\n' "$(basename "$file")" "$(stat -c %s "$file")" "$((peak_kb / 1024))"
done
