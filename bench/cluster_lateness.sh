#!/usr/bin/env bash
# Warm lateness with many conversations armed across 3 instances on one
# PostgreSQL database (not a test): each instance arms a third of
# CONVERSATIONS at INTERVAL_MS; after two intervals, the lateness of every
# scheduled warm of the last interval (`started_at - due_at`, from the
# history) is reported as p50 / p99 / max.
#
# Usage: bench/cluster_lateness.sh [CONVERSATIONS=100000] [INTERVAL_MS=60000]
# Needs wrk; starts its own PostgreSQL (scripts/postgres.sh) and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
CONVERSATIONS=${1:-100000}
INTERVAL_MS=${2:-60000}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q -p warming-cli -p warming-testkit
eval "$(scripts/postgres.sh start)"
out=bench/out; mkdir -p "$out"
base=${WARMING_POSTGRES_URL%/*}
db="$base/lateness"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; scripts/postgres.sh stop; }
trap cleanup EXIT
psql -q "$base/postgres" -c "CREATE DATABASE lateness"

target/release/warming-standin --listen 127.0.0.1:18700 --ttl-ms 600000 > /dev/null 2>&1 &
pids+=($!)
for i in 1 2 3; do
  port=$((18630 + i))
  ANTHROPIC_API_KEY=sk-bench target/release/warming serve --listen "127.0.0.1:$port" \
    --db "$db" --upstream http://127.0.0.1:18700 --min-interval-ms 1000 --max-idle 0 \
    > /dev/null 2> "$out/lateness-$i.err" &
  pids+=($!)
  until curl -sf "http://127.0.0.1:$port/healthz" > /dev/null; do sleep 0.1; done
done
share=$((CONVERSATIONS / 3))
started=$(date +%s)
arming=()
for i in 1 2 3; do
  CONVERSATIONS=$share INTERVAL_MS=$INTERVAL_MS WRK_THREADS=1 PREFIX="l$i-" \
    wrk -t1 -c8 -d$((share * 2 / 200 + 5))s -s bench/arm.lua "http://127.0.0.1:$((18630 + i))" \
    > /dev/null &
  arming+=($!)
done
wait "${arming[@]}"
armed=$(psql -tA "$db" -c "SELECT count(*) FROM conversations WHERE next_warm_at IS NOT NULL")
echo "armed $armed of $CONVERSATIONS in $(( $(date +%s) - started )) s"
sleep $((2 * INTERVAL_MS / 1000))
since=$(( $(date +%s%3N) - INTERVAL_MS ))
psql -tA "$db" -c "SELECT 'scheduled warms in the last interval: ' || count(*) ||
    '; lateness p50 ' || percentile_cont(0.5) WITHIN GROUP (ORDER BY started_at - due_at) ||
    ' ms, p99 ' || percentile_cont(0.99) WITHIN GROUP (ORDER BY started_at - due_at) ||
    ' ms, max ' || max(started_at - due_at) || ' ms'
  FROM warm_history WHERE trigger = 'scheduled' AND started_at >= $since"
