#!/usr/bin/env bash
# Median time from POST /products to compressed images visible, for products with one
# 1-megapixel JPEG, against the stack `make run` started. Usage: scripts/measure-latency.sh [COUNT]
# (further arguments go to the measuring program: see scripts/measure-throughput.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
require_running_api
exec cargo run --quiet -p system-tests --example pipeline_latency -- "${1:-20}" "${@:2}"
