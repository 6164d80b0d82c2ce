#!/usr/bin/env bash
# `make run`: the local stack, the migrations and the services, in the foreground.
# Ctrl-C (or `make stop` from another shell) stops the services and what the stack started.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state="$root/.local"
bin="${CARGO_TARGET_DIR:-$root/target}/debug"

addr=${API_ADDR:-127.0.0.1:8080}
if curl -fsS "http://$addr/healthz" >/dev/null 2>&1; then
  echo "The API already runs at http://$addr ('make stop' stops it)." >&2
  exit 0
fi

scripts/stack.sh up
cargo build --quiet --bin api

stop() {
  trap - INT TERM EXIT
  scripts/stop.sh
}
trap stop INT TERM EXIT

export IMAGE_STORAGE_URL=${IMAGE_STORAGE_URL:-file://$state/storage}
"$bin/api" migrate
"$bin/api" serve &
echo $! > "$state/api.pid"

for _ in $(seq 1 100); do
  curl -fsS "http://$addr/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
cat >&2 <<MSG

  API:      http://$addr
  Docs:     http://$addr/docs
  OpenAPI:  http://$addr/openapi.json

  Ctrl-C stops everything started here (or run 'make stop' in another shell).

MSG
wait
