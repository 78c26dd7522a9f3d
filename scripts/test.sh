#!/usr/bin/env bash
# Set up and run the test suite (CPU, tiny generated data).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DO_NOT_TRACK=true
exec .venv/bin/python -m pytest tests "$@"
