#!/usr/bin/env bash
# Set up and run the whole test suite (CPU, tiny generated data), what CI runs (.ci/run): one
# pytest worker per core, up to 2 (pytest-xdist; a test file stays on one worker, so a file's
# tests run in order and share their fixtures). Arguments go to pytest.
# The quick loop for daily work (no end-to-end runs, servers or browsers):
#   .venv/bin/python -m pytest -m "not slow" -n 2
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DO_NOT_TRACK=true
workers=${PYTEST_WORKERS:-$(( $(nproc) < 2 ? 1 : 2 ))}
# one torch/OpenMP thread per process when the workers share the cores: idle OpenMP threads of
# one worker would otherwise spin on the cores the other needs
[ "$workers" -gt 1 ] && export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# --no-loadscope-reorder: files go to the workers in collection order, the longest first (tests/conftest.py)
exec .venv/bin/python -m pytest tests -n "$workers" --dist loadfile --no-loadscope-reorder "$@"
