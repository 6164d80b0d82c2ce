#!/usr/bin/env bash
# `make run`: the local stack, the migrations and the services, in the foreground.
# Ctrl-C (or `make stop` from another shell) stops the services and what the stack started.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state="$root/.local"
. "$root/scripts/env.sh"
bin="${CARGO_TARGET_DIR:-$root/target}/debug"

addr=${API_ADDR:-127.0.0.1:8080}
if curl -fsS "http://$addr/healthz" >/dev/null 2>&1; then
  echo "The API already runs at http://$addr ('make stop' stops it)." >&2
  exit 0
fi

scripts/stack.sh up
scripts/oidc-provider.sh up
# Not --quiet: the first build on a new machine takes many minutes, and cargo's lines show
# where it is.
echo "[run] building the api and the image processor (the first build takes a while)" >&2
cargo build --bin api --bin image-processor

stop() {
  trap - INT TERM EXIT
  scripts/stop.sh
}
trap stop INT TERM EXIT

# Both services agree on where images are stored and served; local runs may fetch images
# from this machine (127.0.0.1), which production refuses by default.
export IMAGE_STORAGE_URL=${IMAGE_STORAGE_URL:-file://$state/storage}
export IMAGE_PUBLIC_BASE_URL=${IMAGE_PUBLIC_BASE_URL:-http://$addr}
export IMAGE_FETCH_ALLOWED_NETWORKS=${IMAGE_FETCH_ALLOWED_NETWORKS:-127.0.0.1/32}
# The api trusts the local OpenID Connect provider's access tokens (scripts/token.sh mints
# them); the README says how to point it at another issuer.
export AUTH_ISSUER=${AUTH_ISSUER:-http://127.0.0.1:${OIDC_PORT:-8090}}
export AUTH_AUDIENCE=${AUTH_AUDIENCE:-catalog-api}
# The local provider's public client for the docs page's Authorize button (PKCE).
export AUTH_DOCS_CLIENT_ID=${AUTH_DOCS_CLIENT_ID:-catalog-swagger}
# As the container image runs: two malloc arenas, not one per thread (deploy/Dockerfile).
export MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2}
# tansu holds every fetch for the consumer's whole wait, even when records are there: at
# Kafka's usual 100 ms each hop to a consumer costs 100 ms or more. 20 ms takes that off the
# two hops a product's images wait for (docs/operations.md, "Consumer groups"), for more of
# tansu's CPU while idle; the retry consumers wait 500 ms whatever this says.
export KAFKA_FETCH_WAIT_MAX_MS=${KAFKA_FETCH_WAIT_MAX_MS:-20}
"$bin/api" migrate
# One replica each, with a stable identity: static group members (KIP-345), so a restarted
# service takes its partitions back at once instead of waiting on its dead self
# (docs/operations.md, "Consumer groups"). A value in the environment wins.
KAFKA_GROUP_INSTANCE_ID=${KAFKA_GROUP_INSTANCE_ID:-local-api} "$bin/api" serve &
echo $! > "$state/api.pid"
KAFKA_GROUP_INSTANCE_ID=${KAFKA_GROUP_INSTANCE_ID:-local-processor} "$bin/image-processor" &
echo $! > "$state/image-processor.pid"

for _ in $(seq 1 100); do
  curl -fsS "http://$addr/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
cat >&2 <<MSG

  API:      http://$addr
  Docs:     http://$addr/docs
  OpenAPI:  http://$addr/openapi.json
  Metrics:  http://${METRICS_ADDR:-127.0.0.1:9464}/metrics   processor: http://${PROCESSOR_ADDR:-127.0.0.1:8081}/metrics (/healthz, /readyz)
  Sign-in:  issuer ${AUTH_ISSUER}; a token: TOKEN=\$(scripts/token.sh alice)
  Images:   stored in ${IMAGE_STORAGE_URL}, served at ${IMAGE_PUBLIC_BASE_URL}/images/
  Fetching from 127.0.0.1 is allowed for local demos (IMAGE_FETCH_ALLOWED_NETWORKS=${IMAGE_FETCH_ALLOWED_NETWORKS}).

  Ctrl-C stops everything started here (or run 'make stop' in another shell).

MSG
wait
