#!/usr/bin/env bash
# Throughput and peak memory of the image-processor `make run` started, on a burst of
# products with several photos each (scaled from a camera photograph, scripts/photos.sh),
# all posted at once (the whole ladder of each photo:
# IMAGE_VARIANT_WIDTHS in IMAGE_VARIANT_FORMATS). Usage:
#   scripts/measure-processor-throughput.sh [PRODUCTS] [PHOTOS] [MEGAPIXELS]   (50, 3, 4)
# Prints images per second, images per second per core (the processor's CPU time), and
# its peak RSS (VmHWM, since it started: restart `make run` before measuring).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
require_running_api
CAMERA_PHOTO=${CAMERA_PHOTO:-$(scripts/photos.sh)/Picture_0B_by_freespace.jpg}
export CAMERA_PHOTO
products=${1:-50} photos=${2:-3}
pid=$(processor_pid)
# utime + stime of the processor, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
cargo build --quiet -p system-tests --example pipeline_latency
before_cpu=$(cpu_ticks)
started=$(date +%s.%N)
IMAGES_PER_PRODUCT=$photos MEGAPIXELS=${3:-4} \
  "$CARGO_TARGET_DIR/debug/examples/pipeline_latency" "$products" --burst 0
awk -v pid="$pid" -v cores="$(nproc)" -v images=$((products * photos)) \
  -v took="$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')" \
  -v cpu="$(awk -v a="$before_cpu" -v b="$(cpu_ticks)" -v hz="$(getconf CLK_TCK)" 'BEGIN {print (b - a) / hz}')" \
  -v rss="$(( $(status_kb "$pid" VmHWM) / 1024 ))" 'BEGIN {
    printf "image-processor (pid %s, %d cores): %d images in %.1f s wall, %.1f s CPU\n", pid, cores, images, took, cpu
    printf "  %.2f images/s; %.2f images per CPU-second (per core); peak RSS %d MB\n", images / took, images / cpu, rss
  }'
