#!/usr/bin/env bash
# Set up and run the whole pipeline on the embedded synthetic demo data (CPU, a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DO_NOT_TRACK=true
.venv/bin/kedro run --env demo "$@"
echo
echo "Done. The demo's files are under data/demo/ (reports: data/demo/08_reporting/)."
echo "Browse, offline on 127.0.0.1: .venv/bin/fer-ui mlflow   (runs)   .venv/bin/fer-ui viz --env demo   (the DAG)"
echo "Serve the demo model over HTTP on 127.0.0.1:5001: .venv/bin/fer-serve --env demo   (docs/serving.md)"
