#!/usr/bin/env bash
# `make observe` (with `make run` going): a local Prometheus with the project's rules
# (deploy/observability/: SLO recordings, burn-rate and cause alerts), scraping the api
# (METRICS_ADDR), the processor (PROCESSOR_ADDR) and itself. Runs in the background until
# `make stop` (or `scripts/observe.sh down`); its data is kept in .local/prometheus.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. scripts/prometheus.sh

state="$root/.local"
pidfile="$state/prometheus.pid"
addr=${PROMETHEUS_ADDR:-127.0.0.1:9090}
say() { printf '[observe] %s\n' "$*" >&2; }

# Ours when the pid file's process is a Prometheus (a stale file after a reboot may name
# someone else's process).
running() {
  [ -f "$pidfile" ] && [ "$(ps -p "$(cat "$pidfile")" -o comm= 2>/dev/null)" = prometheus ]
}

if [ "${1:-up}" = down ]; then
  if running; then
    pid=$(cat "$pidfile")
    kill -TERM "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    say "Prometheus stopped (pid $pid)"
  fi
  rm -f "$pidfile"
  exit 0
fi

ensure_prometheus
mkdir -p "$state/prometheus"
if running; then
  say "Prometheus already runs (pid $(cat "$pidfile")): http://$addr"
else
  # Exemplars (the trace of a slow freshness observation) are stored only when asked.
  prometheus \
    --config.file="$root/deploy/observability/prometheus.yml" \
    --storage.tsdb.path="$state/prometheus" \
    --web.listen-address="$addr" \
    --web.enable-lifecycle \
    --enable-feature=exemplar-storage \
    >"$state/prometheus.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 100); do
    curl -fsS "http://$addr/-/ready" >/dev/null 2>&1 && break
    running || { say "Prometheus did not start; see $state/prometheus.log"; tail -5 "$state/prometheus.log" >&2; exit 1; }
    sleep 0.2
  done
fi

# One scrape round, then what each target says.
sleep 6
curl -fsS "http://$addr/api/v1/targets?state=active" | python3 -c '
import json, sys
for t in json.load(sys.stdin)["data"]["activeTargets"]:
    job, url, health = t["labels"]["job"], t["scrapeUrl"], t["health"]
    print("  %-16s %-36s %s %s" % (job, url, health, t.get("lastError") or ""))
' >&2 || true
cat >&2 <<TXT

  Prometheus: http://$addr           (graph, targets, rules)
  Alerts:     http://$addr/alerts    (pending and firing; no Alertmanager here)
  Dashboard:  import deploy/observability/dashboard.json into a Grafana with this Prometheus
              as its data source.
  Stop:       make stop  (or scripts/observe.sh down)
TXT
