#!/usr/bin/env bash
# `make stop`: stops the services `make run` started, then the parts of the stack it started.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state="$root/.local"
for pidfile in "$state"/api.pid "$state"/image-processor.pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -TERM "$pid" 2>/dev/null; then
    printf '[stop] %s (pid %s)\n' "$(basename "$pidfile" .pid)" "$pid" >&2
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$pidfile"
done
"$root/scripts/oidc-provider.sh" down
"$root/scripts/observe.sh" down
# KEEP_STACK=1 (scripts/client-demo.sh) leaves PostgreSQL, Redis and the broker running.
[ "${KEEP_STACK:-}" = 1 ] || "$root/scripts/stack.sh" down
