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

# The S3 protocol server the storage tests start (tests/support/s3.rs): moto's server mode,
# from PyPI. Debian's own Python refuses user installs into the system (PEP 668) unless told.
if ! command -v moto_server >/dev/null; then
  echo "[test] installing moto[server] (an S3 protocol server for the storage tests)" >&2
  python3 -m pip install --quiet 'moto[server]==5.2.1' 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages 'moto[server]==5.2.1'
  hash -r
fi

# The alert rules: promtool's checks and unit tests. This also installs Prometheus, which
# the live alert test (tests/pipeline/alerts.rs) starts.
scripts/check-rules.sh

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
