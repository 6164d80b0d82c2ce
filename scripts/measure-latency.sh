#!/usr/bin/env bash
# Median time from POST /products to compressed images visible, for products with one
# 1-megapixel JPEG, against the stack `make run` started. Usage: scripts/measure-latency.sh [COUNT]
# (further arguments go to the measuring program: see scripts/measure-throughput.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/catalog/target}
addr=${API_ADDR:-127.0.0.1:8080}
curl -fsS "http://$addr/healthz" >/dev/null || { echo "Start the stack first: make run" >&2; exit 1; }
exec cargo run --quiet -p system-tests --example pipeline_latency -- "${1:-20}" "${@:2}"
