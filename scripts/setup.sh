#!/usr/bin/env bash
# Create .venv (if needed) and install fedllm, its plugin distributions and the test tools,
# pinned by constraints.txt (CPU torch on this machine). Idempotent; ~1-2 minutes when fresh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade "pip>=24" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -m pip install -q -c constraints.txt \
  -e . \
  -e plugins/algorithms -e plugins/datasets -e plugins/tasks -e plugins/peft \
  -e plugins/evaluators -e plugins/privacy -e plugins/flower \
  pytest bitsandbytes "flwr[simulation]" opacus flwr-datasets matplotlib 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import fedllm, fedllm_algorithms, fedllm_datasets" \
  || { echo "setup failed: fedllm is not importable from .venv" >&2; exit 1; }
