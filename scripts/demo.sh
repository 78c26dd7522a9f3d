#!/usr/bin/env bash
# Set up and run the whole pipeline on the embedded synthetic demo data (CPU, a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DO_NOT_TRACK=true
.venv/bin/kedro run --env demo "$@"
echo
echo "Done. Reports: data/08_reporting/   Browse: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1"
