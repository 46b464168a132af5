#!/usr/bin/env bash
# Installs the coding agents people run, pinned, from npm (tests/agents):
# Anthropic's Claude Code (`claude`) and OpenAI's Codex CLI (`codex`). The
# e2e tests drive them through `warming serve`'s proxy; they find them in
# tests/agents/node_modules/.bin (or WARMING_AGENTS_BIN).
#
#   scripts/agents.sh            # install; prints the bin directory
set -euo pipefail
cd "$(dirname "$0")/../tests/agents"
if [ ! -x node_modules/.bin/claude ] || [ ! -x node_modules/.bin/codex ]; then
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
node_modules/.bin/claude --version >/dev/null
node_modules/.bin/codex --version >/dev/null
echo "$PWD/node_modules/.bin"
