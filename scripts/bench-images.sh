#!/usr/bin/env bash
# `make bench-images`: the processor's ladder of widths and formats beside libvips's on the
# same photos, one thread each: time, bytes and SSIM (scripts/bench-images.py says how).
# Installs what it lacks: Debian's libvips (libvips-tools, which brings the library and its
# AVIF support through libheif and aom) and a virtualenv with pyvips and numpy.
#   RUNS=3                 runs per ladder (the median is reported)
#   IMAGE_AVIF_QUALITY=…   our settings, as the processor reads them (also IMAGE_AVIF_SPEED,
#                          IMAGE_AVIF_MODE, IMAGE_AVIF_SEARCH)
#   VIPS_AVIF_Q=50         libvips's AVIF quality (its default)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
command -v vips >/dev/null || apt_install libvips-tools
venv="$(dirname "$CARGO_TARGET_DIR")/bench-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import pyvips, numpy' 2>/dev/null; then
  python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3 python3-venv
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'pyvips==3.*' 'numpy==2.*'
fi
# The dev profile: the image crates are optimised in it (Cargo.toml), as `make run` runs.
cargo build --quiet -p image-processor --example compress
work=${BENCH_DIR:-$root/.local/bench-images}
# One thread each: our transform runs on the calling thread; libvips is told so.
photos=$(scripts/photos.sh)
VIPS_CONCURRENCY=1 "$venv/bin/python" scripts/bench-images.py \
  "$CARGO_TARGET_DIR/debug/examples/compress" "$photos" "$work"
