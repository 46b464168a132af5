#!/usr/bin/env bash
# Scale-out benchmark on PostgreSQL (not a test): warms completed per second
# by 1, 2 and 3 `warming serve` instances sharing one database, beside a bare
# `FOR UPDATE SKIP LOCKED` claim loop (pgbench, batches of 10) on a queue
# table of the same size, measured in the same run: the database's ceiling
# for claiming due work on this machine.
#
# Usage: bench/cluster.sh [CONVERSATIONS=6000] [SECONDS=20]
# Each run arms CONVERSATIONS conversations at a 1 s interval, far more than
# the machine can warm, so the figure is the throughput, not the demand.
# Needs wrk; starts its own PostgreSQL (scripts/postgres.sh) and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
CONVERSATIONS=${1:-6000}
SECONDS_RUN=${2:-20}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q -p warming-cli -p warming-testkit
eval "$(scripts/postgres.sh start)"
out=bench/out; mkdir -p "$out"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; scripts/postgres.sh stop; }
trap cleanup EXIT
base=${WARMING_POSTGRES_URL%/*}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

target/release/warming-standin --listen 127.0.0.1:18700 --ttl-ms 600000 > /dev/null 2>&1 &
pids+=($!)

# The ceiling: claim 10 due rows, send them to the back of the queue (due
# again at once, so the queue never runs dry and every claim takes 10), commit.
# (Pushing them an interval ahead, as a first version did, let most claims
# find nothing while pgbench still counted each as 10.)
psql -q "$base/postgres" -c "CREATE DATABASE bare"
psql -q "$base/bare" -c "CREATE TABLE due (id TEXT PRIMARY KEY, due_at TIMESTAMPTZ NOT NULL,
    lease_owner TEXT, lease_until TIMESTAMPTZ, version BIGINT NOT NULL DEFAULT 0);
  CREATE INDEX due_by_time ON due(due_at);
  INSERT INTO due (id, due_at) SELECT 'c-' || i, now() FROM generate_series(1, $CONVERSATIONS) i;"
cat > "$out/claim.sql" <<'SQL'
BEGIN;
WITH c AS (SELECT id FROM due WHERE due_at <= now() ORDER BY due_at LIMIT 10 FOR UPDATE SKIP LOCKED)
UPDATE due SET due_at = now(), lease_owner = 'bench',
  lease_until = now() + interval '10 seconds', version = version + 1 FROM c WHERE due.id = c.id;
COMMIT;
SQL
tps=$("$bin/pgbench" -n -c 4 -j 2 -T "$SECONDS_RUN" -f "$out/claim.sql" "$base/bare" 2>/dev/null \
  | awk '/^tps/ {print $3; exit}')
ceiling=$(python3 -c "print(round($tps * 10))")
echo "bare SKIP LOCKED claims/s (batches of 10): $ceiling"

for n in 1 2 3; do
  db="bench$n"
  psql -q "$base/postgres" -c "CREATE DATABASE $db"
  urls=()
  for i in $(seq "$n"); do
    port=$((18610 + i))
    ANTHROPIC_API_KEY=sk-bench target/release/warming serve --listen "127.0.0.1:$port" \
      --db "$base/$db" --upstream http://127.0.0.1:18700 --min-interval-ms 1000 \
      --max-idle 0 > /dev/null 2> "$out/cluster-$n-$i.err" & pids+=($!)
    urls+=("http://127.0.0.1:$port")
  done
  for url in "${urls[@]}"; do
    until curl -sf "$url/healthz" > /dev/null; do sleep 0.1; done
  done
  # Each instance arms its share (and holds what it armed).
  share=$((CONVERSATIONS / n))
  arming=()
  for i in $(seq "$n"); do
    CONVERSATIONS=$share INTERVAL_MS=1000 WRK_THREADS=1 PREFIX="i$i-" \
      wrk -t1 -c8 -d$((share * 2 / 300 + 2))s -s bench/arm.lua "${urls[$((i - 1))]}" > /dev/null &
    arming+=($!)
  done
  wait "${arming[@]}"
  armed=$(psql -tA "$base/$db" -c "SELECT count(*) FROM conversations WHERE settings LIKE '%\"enabled\":true%'")
  echo "$n instance(s): $armed conversations armed"
  sleep 3
  count() { psql -tA "$base/$db" -c "SELECT count(*) FROM warm_history"; }
  before=$(count); sleep "$SECONDS_RUN"; after=$(count)
  rate=$(( (after - before) / SECONDS_RUN ))
  echo "$n instance(s): $rate warms/s completed ($(python3 -c "print(f'{$rate / $ceiling:.2f}')")x the bare claim loop)"
  for pid in "${pids[@]:1}"; do kill "$pid" 2>/dev/null || true; done
  pids=("${pids[0]}")
  sleep 1
done
