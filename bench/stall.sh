#!/usr/bin/env bash
# A slow database call under load (not a test): one release `warming serve` on
# PostgreSQL, KNOWN conversations settled; `bench/stall.py` measures lifecycle
# calls from CLIENTS clients for SECONDS, then again while one never-seen
# conversation's claim waits on a row lock another session holds.
#
# Usage: bench/stall.sh [SECONDS=10] [CLIENTS=16] [KNOWN=500]
# Starts its own PostgreSQL (scripts/postgres.sh) and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p warming-cli -p warming-testkit
eval "$(scripts/postgres.sh start)"
out=bench/out; mkdir -p "$out"
base=${WARMING_POSTGRES_URL%/*}
db="$base/stall"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; scripts/postgres.sh stop; }
trap cleanup EXIT
psql -q "$base/postgres" -c "DROP DATABASE IF EXISTS stall WITH (FORCE)" -c "CREATE DATABASE stall"
target/release/warming-standin --listen 127.0.0.1:18750 --ttl-ms 600000 > /dev/null 2>&1 &
pids+=($!)
ANTHROPIC_API_KEY=sk-bench target/release/warming serve --listen 127.0.0.1:18751 \
  --db "$db" --upstream http://127.0.0.1:18750 > /dev/null 2> "$out/stall.err" &
pids+=($!)
until curl -sf http://127.0.0.1:18751/healthz > /dev/null; do sleep 0.1; done
python3 bench/stall.py http://127.0.0.1:18751 "$db" "${1:-10}" "${2:-16}" "${3:-500}"
