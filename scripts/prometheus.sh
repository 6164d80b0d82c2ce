# Sourced by scripts/check-rules.sh and scripts/observe.sh: Debian's Prometheus (promtool for
# the rule tests, prometheus for `make observe` and the live alert test), installed when
# missing. The package starts a Prometheus service of its own on :9090; it is stopped and
# disabled, because `make observe` and the tests start their own.
# shellcheck shell=bash

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_get_install() {
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The package's own Prometheus service: stop it and keep it from starting at boot.
stop_packaged_prometheus() {
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    as_root systemctl stop prometheus.service >/dev/null 2>&1 || true
  else
    as_root service prometheus stop >/dev/null 2>&1 || true
  fi
  # Disabling works without a running systemd too (it removes the unit's symlinks).
  if command -v systemctl >/dev/null; then as_root systemctl disable prometheus.service >/dev/null 2>&1 || true; fi
  if command -v update-rc.d >/dev/null; then as_root update-rc.d prometheus disable >/dev/null 2>&1 || true; fi
  # Without an init system the init script may not find what it started: the daemon runs
  # as the package's `prometheus` user (our own Prometheus never does).
  local pids
  pids=$(pgrep -u prometheus -x prometheus || true)
  if [ -n "$pids" ]; then
    printf '[prometheus] %s\n' "stopping the Prometheus service the package started (pid $(echo $pids))"
    # shellcheck disable=SC2086 # one pid per word
    as_root kill $pids || true
  fi
}

# promtool and prometheus, from Debian's package, when missing.
ensure_prometheus() {
  if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    printf '[prometheus] installing Debian package prometheus (promtool, prometheus)\n' >&2
    apt_get_install prometheus
    stop_packaged_prometheus
  fi
}

