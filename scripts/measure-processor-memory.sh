#!/usr/bin/env bash
# Peak memory (VmHWM) of the image-processor `make run` started, over a burst of products
# with one large JPEG each, all posted at once. Usage:
#   scripts/measure-processor-memory.sh [COUNT] [MEGAPIXELS]      (default 16 products, 14.7 MP)
#   PHOTO=file.jpg scripts/measure-processor-memory.sh 8         (serve that file instead)
# The peak is the process's since it started: restart `make run` before measuring.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
require_running_api
pid=$(processor_pid)
before=$(status_kb "$pid" VmHWM)
cargo build -p system-tests --example pipeline_latency
MEGAPIXELS=${2:-14.7} "$CARGO_TARGET_DIR/debug/examples/pipeline_latency" "${1:-16}" --burst 0
echo "image-processor (pid $pid): peak RSS $(( $(status_kb "$pid" VmHWM) / 1024 )) MB (it was $((before / 1024)) MB before the burst), now $(( $(status_kb "$pid" VmRSS) / 1024 )) MB"
