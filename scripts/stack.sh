#!/usr/bin/env bash
# The local stack: PostgreSQL, Redis, the tansu broker and a storage directory (and, first,
# the C libraries the build needs: scripts/build-deps.sh).
#
#   scripts/stack.sh up     start whatever does not already answer at its configured URL
#   scripts/stack.sh down   stop what `up` started (services that were already running stay)
#
# A service that answers at POSTGRES_URL, REDIS_URL or KAFKA_BROKERS is reused as it is.
# What is missing is installed (Debian packages; tansu from crates.io, once per machine)
# and started; what was started is recorded under .local/ so `down` stops only that.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state="$root/.local"
mkdir -p "$state"

. "$root/scripts/env.sh"

POSTGRES_URL=${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/catalog}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
KAFKA_BROKERS=${KAFKA_BROKERS:-127.0.0.1:9092}
IMAGE_STORAGE_URL=${IMAGE_STORAGE_URL:-file://$state/storage}
TANSU_VERSION=0.6.0

say() { printf '[stack] %s\n' "$*" >&2; }

# host and port of a URL like scheme://user:pw@host:port/path
url_host() { local u=${1#*://}; u=${u#*@}; u=${u%%/*}; echo "${u%:*}"; }
url_port() { local u=${1#*://}; u=${u#*@}; u=${u%%/*}; [[ "$u" == *:* ]] && echo "${u##*:}" || echo "$2"; }

answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

wait_for() { # host port name seconds
  local deadline=$((SECONDS + $4))
  until answers "$1" "$2"; do
    if [ $SECONDS -ge $deadline ]; then say "$3 did not come up on $1:$2 within $4 s"; return 1; fi
    sleep 0.3
  done
}

is_local() { [[ "$1" == 127.* || "$1" == localhost || "$1" == ::1 ]]; }

postgres_up() {
  local host port
  host=$(url_host "$POSTGRES_URL"); port=$(url_port "$POSTGRES_URL" 5432)
  if ! answers "$host" "$port"; then
    is_local "$host" || { say "PostgreSQL at $host:$port does not answer"; return 1; }
    command -v pg_ctlcluster >/dev/null || apt_install postgresql postgresql-contrib
    local version; version=$(ls /etc/postgresql | sort -V | tail -1)
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    # A cluster this script installs trusts local TCP connections, like the URL's default.
    if ! grep -q 'catalog-local-trust' "$hba"; then
      sed -i "1i host all all 127.0.0.1/32 trust # catalog-local-trust\nhost all all ::1/128 trust # catalog-local-trust" "$hba"
    fi
    say "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    echo "$version" > "$state/postgres.started"
    wait_for "$host" "$port" PostgreSQL 30
  fi
  command -v psql >/dev/null || apt_install postgresql-client
  # The catalog database itself.
  local db=${POSTGRES_URL##*/}; db=${db%%\?*}
  local admin=${POSTGRES_URL%/*}/postgres
  if [ "$(psql "$admin" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
    say "creating database $db"
    psql "$admin" -qc "CREATE DATABASE \"$db\""
  fi
}

redis_up() {
  local host port
  host=$(url_host "$REDIS_URL"); port=$(url_port "$REDIS_URL" 6379)
  answers "$host" "$port" && return 0
  is_local "$host" || { say "Redis at $host:$port does not answer"; return 1; }
  command -v redis-server >/dev/null || apt_install redis-server
  say "starting Redis on $port"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
    --dir "$state" --pidfile "$state/redis.pid" --logfile "$state/redis.log"
  touch "$state/redis.started"
  wait_for "$host" "$port" Redis 20
}

tansu_bin() {
  command -v tansu 2>/dev/null || { [ -x "$HOME/.cargo/bin/tansu" ] && echo "$HOME/.cargo/bin/tansu"; } || true
}

kafka_up() {
  local first=${KAFKA_BROKERS%%,*}
  local host=${first%:*} port=${first##*:}
  if answers "$host" "$port"; then
    # A broker of ours started by an earlier version of this script gets its index too.
    if [ -f "$state/tansu.pid" ] && [ -f "$state/tansu/tansu.db" ]; then tansu_index "$state/tansu/tansu.db"; fi
    return 0
  fi
  is_local "$host" || { say "Kafka at $first does not answer"; return 1; }
  if [ -z "$(tansu_bin)" ]; then
    say "building the tansu broker $TANSU_VERSION from crates.io (once per machine, about 10 minutes on 2 cores)"
    # --locked: without it the build fails; libsql: the SQLite storage engine (memory:// loses
    # records when a consumer resumes mid-batch). See ARCHITECTURE.md.
    cargo install tansu --version "$TANSU_VERSION" --locked --features libsql
  fi
  mkdir -p "$state/tansu"
  say "starting tansu on $host:$port (data in .local/tansu)"
  # The storage path is relative to the working directory: an absolute sqlite:/// path is mangled.
  local bin; bin=$(tansu_bin)
  (
    cd "$state/tansu" || exit 1
    nohup "$bin" broker \
      --listener-url "tcp://$host:$port" \
      --advertised-listener-url "tcp://$host:$port" \
      --storage-engine sqlite://tansu.db > tansu.log 2>&1 &
    echo $! > "$state/tansu.pid"
  )
  wait_for "$host" "$port" tansu 60
  tansu_index "$state/tansu/tansu.db"
}

# tansu 0.6 has no index on its header table: without one a fetch's cost grows with every
# header ever written, until the broker stops answering (see the script).
tansu_index() {
  python3 "$root/scripts/tansu-index.py" "$1"
  say "tansu's header table is indexed"
}

storage_up() {
  case "$IMAGE_STORAGE_URL" in
    file://*) mkdir -p "${IMAGE_STORAGE_URL#file://}" ;;
  esac
}

up() {
  "$root/scripts/build-deps.sh"
  postgres_up
  redis_up
  kafka_up
  storage_up
  say "ready: PostgreSQL $(url_host "$POSTGRES_URL"):$(url_port "$POSTGRES_URL" 5432), Redis $(url_host "$REDIS_URL"):$(url_port "$REDIS_URL" 6379), Kafka $KAFKA_BROKERS"
}

down() {
  if [ -f "$state/tansu.pid" ]; then
    local pid; pid=$(cat "$state/tansu.pid")
    if kill "$pid" 2>/dev/null; then
      say "stopping tansu"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    rm -f "$state/tansu.pid"
  fi
  if [ -f "$state/redis.started" ]; then
    say "stopping Redis"; kill "$(cat "$state/redis.pid" 2>/dev/null)" 2>/dev/null || true
    rm -f "$state/redis.started"
  fi
  if [ -f "$state/postgres.started" ]; then
    say "stopping PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(cat "$state/postgres.started")" main stop || true
    rm -f "$state/postgres.started"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
