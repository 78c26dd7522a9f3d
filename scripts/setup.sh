#!/usr/bin/env bash
# Create .venv and install fer_pipeline with its test extras. Idempotent: re-runs skip the
# install unless pyproject.toml changed. torch/torchvision come unpinned from the registry as a
# matching pair (the CPU-only torch wheel in pip's find-links has no matching torchvision).
set -euo pipefail
cd "$(dirname "$0")/.."
export DO_NOT_TRACK=true
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "Installing fer_pipeline and its dependencies into .venv (first time: a few minutes)..."
  if ! .venv/bin/python -m pip install -q -e ".[dev]" > .venv/install.log 2>&1; then
    grep -v "is ignored" .venv/install.log >&2
    echo "pip install failed (full log: .venv/install.log)" >&2
    exit 1
  fi
  touch "$stamp"
fi
.venv/bin/python -c "import torch, torchvision, kedro, mlflow; print(f'torch {torch.__version__}, torchvision {torchvision.__version__}, kedro {kedro.__version__}, mlflow {mlflow.__version__}')"
