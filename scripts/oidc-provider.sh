#!/usr/bin/env bash
# The local OpenID Connect provider `make run` (and the client demo) start beside the stack:
# npm's oidc-provider (scripts/oidc/, pinned by its package-lock.json), its signing key kept in
# .local/oidc/ across restarts. The api trusts it through AUTH_ISSUER.
#   scripts/oidc-provider.sh up     start it unless one answers; installs what it needs
#   scripts/oidc-provider.sh down   stop the one this script started
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/env.sh
issuer=${OIDC_ISSUER:-http://127.0.0.1:${OIDC_PORT:-8090}}
pidfile=${OIDC_PID_FILE:-$root/.local/oidc/provider.pid}
say() { printf '[oidc] %s\n' "$*" >&2; }

answers() { curl -fsS --max-time 2 "$issuer/.well-known/openid-configuration" >/dev/null 2>&1; }

case "${1:-up}" in
  up)
    if answers; then say "an OpenID Connect provider answers at $issuer"; exit 0; fi
    command -v node >/dev/null || apt_install nodejs npm
    if [ ! -d scripts/oidc/node_modules/oidc-provider ]; then
      say "installing oidc-provider (npm ci in scripts/oidc)"
      npm ci --prefix scripts/oidc --no-audit --no-fund --loglevel=error >/dev/null
    fi
    mkdir -p "$root/.local/oidc"
    OIDC_PID_FILE="$pidfile" nohup node scripts/oidc/provider.mjs >"$root/.local/oidc/provider.log" 2>&1 &
    for _ in $(seq 1 100); do answers && break; sleep 0.1; done
    answers || { say "the provider did not start; its log:"; cat "$root/.local/oidc/provider.log" >&2; exit 1; }
    say "ready at $issuer (tokens: scripts/token.sh SUBJECT [SCOPE...])"
    ;;
  down)
    [ -f "$pidfile" ] && kill -TERM "$(cat "$pidfile")" 2>/dev/null && say "stopped"
    rm -f "$pidfile"
    ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
