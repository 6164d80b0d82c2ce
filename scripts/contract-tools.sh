#!/usr/bin/env bash
# Sourced by check-contracts.sh and client-demo.sh: makes sure the validators and the client
# generator are installed, then exports
#   TOOLS_VENV                    a virtualenv with scripts/contracts/requirements.txt
#   CONTRACT_TOOLS_NODE_MODULES   node_modules with scripts/contracts/package-lock.json
# Installed once per machine under one directory (like the build), and again only when the
# pinned versions change. A bare Debian machine gets python3-venv, nodejs and npm first.

tools_root=${CONTRACT_TOOLS_DIR:-$(dirname "$CARGO_TARGET_DIR")/tools}
pins="$root/scripts/contracts"
stamp=$(cat "$pins/requirements.txt" "$pins/package-lock.json" | sha256sum | cut -c1-16)
tools="$tools_root/$stamp"
export TOOLS_VENV="$tools/venv"
export CONTRACT_TOOLS_NODE_MODULES="$tools/node/node_modules"

if [ ! -f "$tools/.complete" ]; then
  python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3 python3-venv
  command -v npm >/dev/null || apt_install nodejs npm
  printf '[tools] installing the contract validators into %s\n' "$tools" >&2
  rm -rf "$tools" && mkdir -p "$tools/node"
  python3 -m venv "$TOOLS_VENV"
  "$TOOLS_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$pins/requirements.txt"
  cp "$pins/package.json" "$pins/package-lock.json" "$tools/node/"
  (cd "$tools/node" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  touch "$tools/.complete"
  # Tools of earlier pins are not needed any more.
  find "$tools_root" -mindepth 1 -maxdepth 1 ! -name "$stamp" -exec rm -rf {} +
fi
