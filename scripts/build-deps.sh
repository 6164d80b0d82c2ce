#!/usr/bin/env bash
# What the build needs beyond the Rust toolchain, installed from Debian's packages when
# missing; quiet when they are there:
# - OpenSSL's headers and pkg-config, for librdkafka's TLS and SASL (the `ssl` feature of
#   rdkafka; see docs/deploy.md);
# - libaom's headers and library, the AV1 encoder behind the AVIF variants (crate `avif`),
#   and libclang, with which the aom-sys crate generates its bindings from those headers.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/env.sh"
missing=()
if ! { command -v pkg-config >/dev/null && pkg-config --exists openssl; }; then
  missing+=(pkg-config libssl-dev)
fi
pkg-config --exists aom 2>/dev/null || missing+=(libaom-dev)
compgen -G '/usr/lib/llvm-*/lib/libclang.so' >/dev/null || missing+=(libclang-dev)
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}"
fi
