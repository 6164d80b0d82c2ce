#!/usr/bin/env bash
# The README's demo through a client generated from the committed OpenAPI document:
#   1. openapi-python-client generates `product_catalog_client` from api/openapi.json (a
#      warning, i.e. a part of the document the generator could not use, fails the run);
#   2. mypy --strict type-checks scripts/client-demo/demo.py against it;
#   3. demo.py runs against the API at API_ADDR: `make run`'s when it answers, otherwise this
#      starts the services the way `make run` does and stops them afterwards (the stack stays);
#      tests/fixtures/images are served over HTTP from 127.0.0.1 for the processor to fetch;
#   4. subscriber.py reads the events the demo caused from Kafka with confluent-kafka and
#      checks their keys, headers and payloads against events/asyncapi.json;
#   5. schemathesis sends the same server a few hundred requests generated from the document
#      (examples, boundaries, random and stateful sequences) and checks every answer against
#      it: documented status, content type, headers and response schema, no 5xx, 405 with
#      Allow. Its positive_data_acceptance check is left out: the document gives types, and
#      the server refuses well-typed but invalid values (an empty image list, an unknown
#      user) with a documented 422 or 404, which that check counts as a failure. The seed is
#      fixed, so a run can be repeated;
#   6. the docs page's Authorize button signs in at the local provider (authorization code
#      with PKCE) in headless Chromium, and GET /users/me accepts the token it got
#      (scripts/docs-signin/check.mjs; Debian's chromium and npm's playwright-core, installed
#      when missing).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
. scripts/contract-tools.sh
say() { printf '[client-demo] %s\n' "$*" >&2; }

work=$(mktemp -d)
started=""
images_pid=""
cleanup() {
  [ -n "$images_pid" ] && kill "$images_pid" 2>/dev/null
  if [ -n "$started" ]; then
    say "stopping the services it started"
    KEEP_STACK=1 scripts/stop.sh
    wait "$started" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

say "generating the client from api/openapi.json"
(cd "$work" && PATH="$TOOLS_VENV/bin:$PATH" openapi-python-client generate \
  --path "$root/api/openapi.json" --meta none --output-path product_catalog_client \
  --fail-on-warning >/dev/null)
cp scripts/client-demo/demo.py "$work/"
say "type-checking the demo against it (mypy --strict)"
(cd "$work" && "$TOOLS_VENV/bin/mypy" --strict --follow-imports=silent --no-incremental demo.py)

addr=${API_ADDR:-127.0.0.1:8080}
if ! curl -fsS "http://$addr/healthz" >/dev/null 2>&1; then
  say "no API at $addr: starting the services as 'make run' does"
  KEEP_STACK=1 scripts/run.sh >"$work/run.log" 2>&1 &
  started=$!
  deadline=$((SECONDS + 300))
  until curl -fsS "http://$addr/readyz" >/dev/null 2>&1; do
    if ! kill -0 "$started" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      say "the API did not become ready; its output:"; cat "$work/run.log" >&2; exit 1
    fi
    sleep 0.5
  done
fi

# The demo photos, over HTTP on a free loopback port (make run lets the processor fetch
# from 127.0.0.1).
port=$("$TOOLS_VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$TOOLS_VENV/bin/python" -m http.server "$port" --bind 127.0.0.1 --directory tests/fixtures/images \
  >"$work/images.log" 2>&1 &
images_pid=$!
until curl -fsS "http://127.0.0.1:$port/rocket.jpg" -o /dev/null 2>/dev/null; do sleep 0.1; done

status=0
# A seller of its own, signed in at the local provider `make run` started.
token=$(scripts/token.sh "demo-$(date +%s)-$$" catalog:write)
(cd "$work" && "$TOOLS_VENV/bin/python" demo.py "http://$addr" "http://127.0.0.1:$port" "$token") || status=$?
if [ "$status" = 0 ]; then
  say "reading the demo's events as a subscriber, checked against events/asyncapi.json"
  (cd "$work" && "$TOOLS_VENV/bin/python" "$root/scripts/client-demo/subscriber.py" \
    "${KAFKA_BROKERS:-127.0.0.1:9092}" "${KAFKA_TOPIC_PREFIX:-catalog.}" \
    "$root/events/asyncapi.json" demo-ids.json) || status=$?
fi
if [ "$status" = 0 ]; then
  say "checking the server's answers against api/openapi.json (schemathesis)"
  (cd "$work" && "$TOOLS_VENV/bin/schemathesis" run --url "http://$addr" "$root/api/openapi.json" \
    --checks all --exclude-checks positive_data_acceptance --max-examples 30 --seed 1 \
    --header "Authorization: Bearer $token" --no-color) || status=$?
fi
if [ "$status" = 0 ]; then
  say "signing in through the docs page's Authorize button (headless Chromium)"
  command -v chromium >/dev/null || apt_install --no-install-recommends chromium
  if [ ! -d scripts/docs-signin/node_modules/playwright-core ]; then
    npm ci --prefix scripts/docs-signin --no-audit --no-fund --loglevel=error >/dev/null
  fi
  node scripts/docs-signin/check.mjs "http://$addr" "$root/.local/docs-signin-failure.png" || status=$?
fi
# Secrets stay secret: the services' logs of the whole run (at `make run`'s level) hold
# neither the demo's access token nor any e-mail address it registered.
if [ "$status" = 0 ] && [ -n "$started" ]; then
  say "checking the services' logs for the token and e-mail addresses"
  if grep -qF "$token" "$work/run.log"; then say "an access token was logged"; status=1; fi
  if grep -qE '[A-Za-z0-9._-]+@example\.com' "$work/run.log"; then
    say "an e-mail address was logged:"; grep -oE '[^"]*@example\.com' "$work/run.log" | head -3 >&2
    status=1
  fi
fi
if [ "$status" != 0 ] && [ -n "$started" ]; then
  say "the demo failed; the services' last output:"; tail -n 40 "$work/run.log" >&2
fi
exit "$status"
