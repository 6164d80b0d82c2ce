#!/usr/bin/env bash
# How long a burst of products takes to be processed when the image server is slow (each
# image answered DELAY_MS late, like a distant host), against the stack `make run` started.
# Compare IMAGE_JOBS_IN_FLIGHT settings: `IMAGE_JOBS_IN_FLIGHT=1 make run` vs `make run`.
# Usage: scripts/measure-throughput.sh [COUNT] [DELAY_MS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/catalog/target}
addr=${API_ADDR:-127.0.0.1:8080}
curl -fsS "http://$addr/healthz" >/dev/null || { echo "Start the stack first: make run" >&2; exit 1; }
exec cargo run --quiet -p system-tests --example pipeline_latency -- "${1:-24}" --burst "${2:-500}"
