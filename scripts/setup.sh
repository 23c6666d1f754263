#!/usr/bin/env bash
# Create .venv (if needed) and install fedllm, its plugin distributions and the dev tools,
# pinned by constraints.txt (CPU torch on this machine). Idempotent; ~2-4 minutes when fresh.
# Prints one line per step; the installers' own output goes to .venv/setup.log (shown on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOG=.venv/setup.log

step() { printf '%-58s' "$1"; }
run() {
  if "$@" >>"$LOG" 2>&1; then return 0; fi
  echo "failed"
  echo "setup: '$*' failed; the end of $LOG:" >&2
  tail -n 40 "$LOG" >&2
  exit 1
}

# HumanEval's sandbox isolates generated code with bubblewrap when it is on PATH (otherwise with
# its own namespace launcher): install it when we can, quietly; never fail setup over it.
if ! command -v bwrap >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  step "bubblewrap (sandbox for generated code)"
  export DEBIAN_FRONTEND=noninteractive
  if timeout 300 apt-get install -y -qq bubblewrap >/dev/null 2>&1 \
     || { timeout 300 apt-get update -qq >/dev/null 2>&1 \
          && timeout 300 apt-get install -y -qq bubblewrap >/dev/null 2>&1; }; then
    echo "installed"
  else
    echo "unavailable (the sandbox uses its fallback launcher)"
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
: >"$LOG"
PIP=(.venv/bin/python -m pip install --disable-pip-version-check -q -c constraints.txt)

step "pip and build backends"
run "${PIP[@]}" --upgrade "pip>=24" setuptools hatchling wheel
echo "ok"

step "dependencies (torch, transformers, peft, trl, flwr, ...)"
run "${PIP[@]}" torch transformers peft trl accelerate datasets bitsandbytes "flwr[simulation]" \
  opacus flwr-datasets matplotlib sentencepiece protobuf pluggy pydantic rich click PyYAML \
  safetensors numpy huggingface-hub tensorboard pytest ruff mypy types-PyYAML
echo "ok"

# Editable installs of our own distributions; build isolation off (the backends are installed
# above), so no per-package build environment is made and nothing is downloaded again.
step "fedllm + 9 plugin distributions (editable)"
run "${PIP[@]}" --no-build-isolation -e . \
  -e plugins/algorithms -e plugins/datasets -e plugins/tasks -e plugins/peft \
  -e plugins/evaluators -e plugins/privacy -e plugins/flower -e "plugins/codecs[zstd]" \
  -e plugins/bench
echo "ok"

step "check"
.venv/bin/python -c "import fedllm, fedllm_algorithms, fedllm_datasets, fedllm_bench" >>"$LOG" 2>&1 \
  || { echo "failed"; echo "setup failed: fedllm is not importable from .venv" >&2; exit 1; }
.venv/bin/python -m pip check >>"$LOG" 2>&1 \
  || { echo "failed"; tail -n 20 "$LOG" >&2; exit 1; }
echo "ok: $(.venv/bin/fedllm --version)"
