#!/usr/bin/env bash
# Load benchmark of `warming serve` (not a test):
#  1. lifecycle calls/s with wrk against warming and against a bare axum handler
#     with the same routes, same machine, same run; reports the ratio;
#  2. warm lateness (when the provider received the warm minus when it was
#     due) p50/p99 with N armed conversations against the provider stand-in.
# Usage: [SYSTEM_KB=48] bench/serve.sh [CONVERSATIONS=100000] [INTERVAL_MS=60000]
# SYSTEM_KB: every settle carries a shared system prompt of that size and ~2 KB
# of its own (templates as the issue measures them); unset, a tiny request.
set -euo pipefail
cd "$(dirname "$0")/.."
CONVERSATIONS=${1:-100000}
INTERVAL_MS=${2:-60000}
export CONVERSATIONS INTERVAL_MS WRK_THREADS=2
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q -p warming-cli -p warming-testkit
out=bench/out; rm -rf "$out"; mkdir -p "$out"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

start() { # name, command...: starts it in this shell (so its pid is kept
  # for the EXIT trap; a $(...) subshell would lose it), waits for
  # "listening on URL" and sets url_<name>
  local name=$1; shift
  "$@" > "$out/$name.out" 2> "$out/$name.err" & pids+=($!)
  for _ in $(seq 200); do
    local url
    url=$(grep -o 'http://[0-9.:]*' "$out/$name.out" 2>/dev/null | head -1 || true)
    [ -n "$url" ] && { printf -v "url_$name" '%s' "$url"; return; }
    sleep 0.05
  done
  echo "$name did not start" >&2; exit 1
}

start standin target/release/warming-standin --listen 127.0.0.1:0 --ttl-ms 600000
start bare target/release/warming-bare
standin=$url_standin bare=$url_bare
target/release/warming serve --listen 127.0.0.1:18600 --db "$out/bench.db" \
  --upstream "$standin" --min-interval-ms 1000 > /dev/null 2> "$out/serve.err" & pids+=($!)
serve_pid=$!
until curl -sf http://127.0.0.1:18600/healthz > /dev/null; do sleep 0.05; done
warming=http://127.0.0.1:18600

rate() { wrk -t2 -c64 -d10s -s bench/lifecycle.lua "$1" | awk '/Requests\/sec/ {print $2}'; }
bare_rate=$(rate "$bare")
warming_rate=$(rate "$warming")
echo "lifecycle calls/s: bare axum handler $bare_rate, warming $warming_rate, ratio $(python3 -c "print(f'{$warming_rate / $bare_rate:.2f}')")"

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$serve_pid/status"; }
rss_before=$(rss_kb)
echo "arming $CONVERSATIONS conversations (interval $INTERVAL_MS ms)..."
wrk -t2 -c64 -d${ARM_SECS:-20}s -s bench/arm.lua "$warming" > "$out/arm.txt"
armed=$(curl -s "$warming/metrics" | awk '/^warming_armed_conversations / {print $2}')
echo "armed: $armed"
echo "resident bytes per armed conversation (the lifecycle run's 10 000 included): $(( ($(rss_kb) - rss_before) * 1024 / armed )); database bytes per conversation: $(( ($(stat -c %s "$out/bench.db") + $(stat -c %s "$out/bench.db-wal" 2>/dev/null || echo 0)) / (armed + 10000) ))"
sleep $(( INTERVAL_MS * 2 / 1000 + 5 ))
python3 bench/lateness.py "$warming" "$standin" "$CONVERSATIONS" 2000
