# Sourced by the other scripts: fills in from .env what the environment does not set.

# The build directory `make` uses (the Makefile sets it; a script run directly gets this).
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/catalog/target}

if [ -f "$root/.env" ]; then
  while IFS='=' read -r key value; do
    [[ "$key" =~ ^[A-Z_][A-Z0-9_]*$ ]] || continue
    [ -z "${!key+set}" ] && export "$key=$value"
  done < <(grep -v '^\s*#' "$root/.env")
fi

# apt_install PACKAGE...: Debian packages for what a bare machine lacks (the package index is
# refreshed once per checkout).
apt_install() {
  printf '[setup] installing %s (Debian packages)\n' "$*" >&2
  mkdir -p "$root/.local"
  if [ ! -f "$root/.local/.apt-updated" ]; then apt-get update -qq && touch "$root/.local/.apt-updated"; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# require_running_api: the measuring scripts run against the services `make run` started, as
# a seller of their own signed in at its local provider (CATALOG_TOKEN, which the examples
# send as their bearer token).
require_running_api() {
  curl -fsS "http://${API_ADDR:-127.0.0.1:8080}/healthz" >/dev/null ||
    { echo "Start the stack first: make run" >&2; exit 1; }
  if [ -z "${CATALOG_TOKEN:-}" ]; then
    CATALOG_TOKEN=$("$root/scripts/token.sh" "measure-$(date +%s)-$$" catalog:write)
    export CATALOG_TOKEN
  fi
}

# processor_pid: the pid of the image-processor `make run` started (needs CARGO_TARGET_DIR).
processor_pid() {
  pgrep -f "$CARGO_TARGET_DIR/[a-z]*/image-processor\$" | head -1 | grep . ||
    { echo "No image-processor of make run is running" >&2; exit 1; }
}

# status_kb PID FIELD: a field of /proc/PID/status in kB (VmHWM, VmRSS).
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
