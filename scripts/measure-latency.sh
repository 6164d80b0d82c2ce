#!/usr/bin/env bash
# Median time from POST /products to compressed images visible, for products with one
# 1-megapixel JPEG scaled from a product photograph (scripts/photos.sh; CAMERA_PHOTO=path for
# another), against the stack
# `make run` started: when the first variant shows and when the whole ladder does.
# Usage: scripts/measure-latency.sh [COUNT]
# (further arguments go to the measuring program: see scripts/measure-throughput.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
require_running_api
CAMERA_PHOTO=${CAMERA_PHOTO:-$(scripts/photos.sh)/Picture_0B_by_freespace.jpg}
export CAMERA_PHOTO
exec cargo run --quiet -p system-tests --example pipeline_latency -- "${1:-20}" "${@:2}"
