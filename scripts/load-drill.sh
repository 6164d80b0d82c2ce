#!/usr/bin/env bash
# The load drill: COUNT products (default 5,000) whose images are refused, posted at once
# against the stack `make run` started; reports the drain rate and whether the broker stayed
# responsive, and fails if any product stays pending. Usage: scripts/load-drill.sh [COUNT]
# (tests/examples/load_drill.rs says what it measures).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
require_running_api
exec cargo run --quiet -p system-tests --example load_drill -- "${1:-5000}"
