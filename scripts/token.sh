#!/usr/bin/env bash
# Prints an access token (a JWT) for ANY subject from the local dev OIDC provider
# (scripts/oidc/provider.mjs), through its dev-only grant. Development and tests only.
#
#   scripts/token.sh SUBJECT [SCOPE...]      # default scope: catalog:write
#   curl -H "Authorization: Bearer $(scripts/token.sh alice catalog:write catalog:admin)" ...
#
# Environment: OIDC_ISSUER (http://127.0.0.1:${OIDC_PORT:-8090}), OIDC_DEV_CLIENT_ID (catalog-dev),
# OIDC_DEV_CLIENT_SECRET (catalog-dev-secret), OIDC_RESOURCE (the provider's default,
# urn:catalog-api), OIDC_TOKEN_TTL (seconds; the provider's default, 3600).
# Only the token goes to stdout; errors go to stderr with a non-zero status.
set -euo pipefail

if [ $# -lt 1 ] || [ -z "$1" ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  echo "usage: $0 SUBJECT [SCOPE...]   (default scope: catalog:write)" >&2
  exit 2
fi
subject=$1
shift
scope=${*:-catalog:write}

issuer=${OIDC_ISSUER:-http://127.0.0.1:${OIDC_PORT:-8090}}
issuer=${issuer%/}
client_id=${OIDC_DEV_CLIENT_ID:-catalog-dev}
client_secret=${OIDC_DEV_CLIENT_SECRET:-catalog-dev-secret}

if ! curl -fsS --max-time 5 "$issuer/.well-known/openid-configuration" >/dev/null 2>&1; then
  echo "token.sh: no OIDC provider answers at $issuer; start it with: node scripts/oidc/provider.mjs" >&2
  exit 1
fi

args=(
  --data-urlencode "grant_type=urn:catalog:params:oauth:grant-type:dev-subject"
  --data-urlencode "client_id=$client_id"
  --data-urlencode "client_secret=$client_secret"
  --data-urlencode "subject=$subject"
  --data-urlencode "scope=$scope"
)
[ -n "${OIDC_RESOURCE:-}" ] && args+=(--data-urlencode "resource=$OIDC_RESOURCE")
[ -n "${OIDC_TOKEN_TTL:-}" ] && args+=(--data-urlencode "expires_in=$OIDC_TOKEN_TTL")

if ! response=$(curl -sS --max-time 10 -w '\n%{http_code}' "${args[@]}" "$issuer/token"); then
  echo "token.sh: the token request to $issuer/token failed" >&2
  exit 1
fi
status=${response##*$'\n'}
body=${response%$'\n'*}
token=$(printf '%s' "$body" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
if [ "$status" != 200 ] || [ -z "$token" ]; then
  echo "token.sh: the provider refused (HTTP $status): $body" >&2
  exit 1
fi
printf '%s\n' "$token"
