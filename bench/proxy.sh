#!/usr/bin/env bash
# Proxy benchmark (not a test): added latency of /proxy/anthropic over calling
# the provider stand-in directly, same run. Usage: bench/proxy.sh [REQUESTS=2000]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p warming-cli -p warming-testkit
out=bench/out; mkdir -p "$out"; rm -f "$out"/proxy.db*
target/release/warming-standin --listen 127.0.0.1:0 --ttl-ms 600000 > "$out/standin-proxy.out" & standin_pid=$!
trap 'kill $standin_pid ${warming_pid:-} 2>/dev/null || true' EXIT
until grep -q listening "$out/standin-proxy.out" 2>/dev/null; do sleep 0.05; done
standin=$(grep -o 'http://[0-9.:]*' "$out/standin-proxy.out")
target/release/warming serve --listen 127.0.0.1:18610 --db "$out/proxy.db" --upstream "$standin" \
  2> "$out/serve-proxy.err" & warming_pid=$!
until curl -sf http://127.0.0.1:18610/healthz > /dev/null; do sleep 0.05; done
python3 bench/proxy_latency.py "$standin" http://127.0.0.1:18610 "${1:-2000}"
