#!/usr/bin/env bash
# `make test`: every test of the workspace against the local stack (already up, see Makefile).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# Databases left by earlier runs of the API tests (each test makes its own).
admin=${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/catalog}
admin=${admin%/*}/postgres
psql "$admin" -tAc "SELECT datname FROM pg_database WHERE datname LIKE 'catalog_test_%'" |
  while read -r db; do psql "$admin" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" || true; done

# The SIGTERM test runs the real image-processor binary. Not --quiet: a first build takes
# many minutes, and cargo's lines show where it is.
cargo build --bins

# The crates have no doctests; nextest runs everything else, one process per test.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi

# The published contracts and deploy files, validated offline; then the README's demo
# through a client generated from the OpenAPI document.
scripts/check-contracts.sh
scripts/client-demo.sh
