#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests, on 127.0.0.1, as an
# unprivileged user (PostgreSQL refuses to run as root).
#
#   eval "$(scripts/postgres.sh start)"   # installs Debian's postgresql if missing,
#                                         # starts a cluster, exports WARMING_POSTGRES_URL
#   cargo test --workspace                # the PostgreSQL tests now run
#   scripts/postgres.sh stop              # stops it and removes its files
#   scripts/postgres.sh restart [SECONDS] # drops every connection, down that long
#
# Or in one go: scripts/postgres.sh test [cargo test args...]
set -euo pipefail
state=${WARMING_POSTGRES_DIR:-/tmp/warming-postgres}
port=${WARMING_POSTGRES_PORT:-55432}
run_as=${WARMING_POSTGRES_USER:-nobody}
# The throwaway cluster's password: it guards nothing but the tests.
password=${WARMING_POSTGRES_PASSWORD:-warming-test-only}

bin_dir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$dir" ]; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  fi
  echo "$dir"
}

as_user() {
  if [ "$(id -u)" = 0 ]; then
    su -s /bin/sh "$run_as" -c "$*"
  else
    sh -c "$*"
  fi
}

start() {
  local bin; bin=$(bin_dir)
  stop >/dev/null 2>&1 || true
  mkdir -p "$state"
  [ "$(id -u)" = 0 ] && chown "$run_as" "$state"
  # Connections over TCP must give the password, as a real server's do:
  # the tests connect with it, and a wrong one is refused.
  printf '%s\n' "$password" > "$state/pwfile"
  [ "$(id -u)" = 0 ] && chown "$run_as" "$state/pwfile"
  as_user "'$bin/initdb' -D '$state/data' -U warming --auth-local=trust \
    --auth-host=scram-sha-256 --pwfile='$state/pwfile' -E UTF8 >'$state/initdb.log' 2>&1"
  rm -f "$state/pwfile"
  as_user "'$bin/pg_ctl' -D '$state/data' -l '$state/server.log' -w \
    -o \"-k '$state' -p $port -c listen_addresses=127.0.0.1 -c fsync=on\" start >/dev/null"
  echo "export WARMING_POSTGRES_URL=postgres://warming:$password@127.0.0.1:$port/postgres"
}

# Restarts the running cluster as a managed database's upgrade or failover
# does: a fast shutdown (every connection dropped), then up again after
# $1 seconds (default 0).
restart() {
  local bin; bin=$(bin_dir)
  as_user "'$bin/pg_ctl' -D '$state/data' -m fast -w stop" >/dev/null
  sleep "${1:-0}"
  as_user "'$bin/pg_ctl' -D '$state/data' -l '$state/server.log' -w \
    -o \"-k '$state' -p $port -c listen_addresses=127.0.0.1 -c fsync=on\" start >/dev/null"
}

stop() {
  local bin; bin=$(bin_dir)
  if [ -d "$state/data" ]; then
    as_user "'$bin/pg_ctl' -D '$state/data' -m fast -w stop" >/dev/null 2>&1 || true
  fi
  rm -rf "$state"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  restart) restart "${2:-0}" ;;
  test)
    shift
    eval "$(start)"
    trap stop EXIT
    WARMING_REQUIRE_POSTGRES=1 cargo test --workspace "$@"
    ;;
  *) echo "usage: $0 start|stop|restart [SECONDS]|test [cargo test args]" >&2; exit 2 ;;
esac
