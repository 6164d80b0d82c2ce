#!/usr/bin/env bash
# What the build needs beyond the Rust toolchain: OpenSSL's headers and pkg-config, for
# librdkafka's TLS and SASL (the `ssl` feature of rdkafka; see docs/deploy.md). Installed
# from Debian's packages when missing; quiet when they are there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/env.sh"
if ! { command -v pkg-config >/dev/null && pkg-config --exists openssl; }; then
  apt_install pkg-config libssl-dev
fi
