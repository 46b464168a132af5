#!/usr/bin/env bash
# Time to first token after an idle gap past the engine's expiry: warming off,
# replays, check-before-replay and save/restore, against a real llama.cpp engine
# on this CPU (see bench/engine.py). Usage: bench/engine.sh [RUNS] [GAP_S]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/engine.sh >/dev/null
exec .venv/bin/python bench/engine.py "$@"
