#!/usr/bin/env bash
# The change feed's publishing latency: commit of a PATCH to its state record on the products
# topic, against the stack `make run` started. Usage: scripts/measure-feed-latency.sh [COUNT]
# (see tests/examples/feed_latency.rs for what is timed and how).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
require_running_api
exec cargo run -p system-tests --example feed_latency -- "${1:-50}"
