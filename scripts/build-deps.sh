#!/usr/bin/env bash
# What the build needs beyond the Rust toolchain, installed from Debian's packages when
# missing; quiet when they are there:
# - OpenSSL's headers and pkg-config, for librdkafka's TLS and SASL (the `ssl` feature of
#   rdkafka; see docs/deploy.md);
# - nasm, for the assembly of rav1e, the AV1 encoder behind the AVIF variants (without it
#   AVIF encoding is several times slower).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/env.sh"
missing=()
if ! { command -v pkg-config >/dev/null && pkg-config --exists openssl; }; then
  missing+=(pkg-config libssl-dev)
fi
command -v nasm >/dev/null || missing+=(nasm)
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}"
fi
