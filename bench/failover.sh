#!/usr/bin/env bash
# Failover after kill -9 (not a test): 3 release `warming serve` instances on
# one PostgreSQL database, CONVERSATIONS armed at INTERVAL_MS. Each run kills
# one instance with SIGKILL and measures
#   - adoption: from the kill until the others hold every conversation it held
#     (the `owners` table), and
#   - the longest gap between two warms of those conversations across the
#     kill (from the history), which the design bounds by interval + lease,
# then restarts it at the same address (which frees what it held at once).
#
# Usage: bench/failover.sh [RUNS=5] [CONVERSATIONS=3000] [INTERVAL_MS=10000] [LEASE_MS=10000]
# Needs wrk; starts its own PostgreSQL (scripts/postgres.sh) and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
CONVERSATIONS=${2:-3000}
INTERVAL_MS=${3:-10000}
LEASE_MS=${4:-10000}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q -p warming-cli -p warming-testkit
eval "$(scripts/postgres.sh start)"
out=bench/out; mkdir -p "$out"
base=${WARMING_POSTGRES_URL%/*}
db="$base/failover"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; scripts/postgres.sh stop; }
trap cleanup EXIT
now_ms() { date +%s%3N; }
sql() { psql -tA "$db" -c "$1"; }

target/release/warming-standin --listen 127.0.0.1:18700 --ttl-ms 600000 > /dev/null 2>&1 &
pids+=($!)
psql -q "$base/postgres" -c "CREATE DATABASE failover"

declare -A instance
start() {
  local i=$1 port=$((18620 + $1))
  ANTHROPIC_API_KEY=sk-bench target/release/warming serve --listen "127.0.0.1:$port" \
    --db "$db" --upstream http://127.0.0.1:18700 --min-interval-ms 1000 --max-idle 0 \
    --lease-ms "$LEASE_MS" > /dev/null 2> "$out/failover-$i.err" &
  instance[$i]=$!
  pids+=($!)
  until curl -sf "http://127.0.0.1:$port/healthz" > /dev/null; do sleep 0.1; done
}
for i in 1 2 3; do start "$i"; done

share=$((CONVERSATIONS / 3))
for i in 1 2 3; do
  CONVERSATIONS=$share INTERVAL_MS=$INTERVAL_MS WRK_THREADS=1 PREFIX="f$i-" \
    wrk -t1 -c8 -d$((share * 2 / 300 + 2))s -s bench/arm.lua "http://127.0.0.1:$((18620 + i))" \
    > /dev/null
done
echo "armed: $(sql "SELECT count(*) FROM conversations WHERE next_warm_at IS NOT NULL") of $CONVERSATIONS"
# Every conversation warmed at least once before the first kill.
sleep $((INTERVAL_MS / 1000 + 2))
sql "CREATE TABLE dead (id TEXT PRIMARY KEY)" > /dev/null

adoptions=(); gaps=()
for run in $(seq "$RUNS"); do
  victim=$(( (run - 1) % 3 + 1 ))
  url="http://127.0.0.1:$((18620 + victim))"
  dead=$(sql "SELECT id FROM instances WHERE url = '$url'")
  sql "DELETE FROM dead; INSERT INTO dead SELECT conversation FROM owners WHERE owner = '$dead'" > /dev/null
  held=$(sql "SELECT count(*) FROM dead")
  killed_at=$(now_ms)
  kill -9 "${instance[$victim]}"
  until [ "$(sql "SELECT count(*) FROM owners o JOIN dead d ON d.id = o.conversation WHERE o.owner = '$dead'")" = 0 ]; do
    sleep 0.1
  done
  adopted=$(( $(now_ms) - killed_at ))
  # Wait until every one of them was warmed after the kill (or give up).
  deadline=$(( $(now_ms) + INTERVAL_MS + LEASE_MS + 10000 ))
  while [ "$(sql "SELECT count(*) FROM dead d WHERE NOT EXISTS (SELECT 1 FROM warm_history h
           WHERE h.conversation = d.id AND h.started_at > $killed_at)")" != 0 ] \
        && [ "$(now_ms)" -lt "$deadline" ]; do
    sleep 0.5
  done
  cold=$(sql "SELECT count(*) FROM dead d WHERE NOT EXISTS (SELECT 1 FROM warm_history h
           WHERE h.conversation = d.id AND h.started_at > $killed_at)")
  gap=$(sql "SELECT max(after - before) FROM (SELECT
      (SELECT max(started_at) FROM warm_history h WHERE h.conversation = d.id AND h.started_at <= $killed_at) AS before,
      (SELECT min(started_at) FROM warm_history h WHERE h.conversation = d.id AND h.started_at > $killed_at) AS after
    FROM dead d) g")
  echo "run $run: killed instance $victim holding $held; adopted in $adopted ms; longest gap between warms $gap ms; $cold never warmed again"
  adoptions+=("$adopted"); gaps+=("$gap")
  start "$victim"
  sleep 2
done
python3 - "${adoptions[*]}" "${gaps[*]}" "$INTERVAL_MS" "$LEASE_MS" <<'PY'
import statistics, sys
adopt = [int(x) for x in sys.argv[1].split()]
gaps = [int(x) for x in sys.argv[2].split()]
interval, lease = int(sys.argv[3]), int(sys.argv[4])
print(f"adoption after kill -9: p50 {statistics.median(adopt):.0f} ms, max {max(adopt)} ms (lease {lease} ms)")
print(f"longest gap between warms: p50 {statistics.median(gaps):.0f} ms, max {max(gaps)} ms "
      f"(bound: interval + lease = {interval + lease} ms)")
PY
