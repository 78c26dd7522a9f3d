#!/usr/bin/env bash
# The imbalance ablation at CPU scale, in resumable pieces (README, "The ablation on 2 CPU cores"):
# the `cpu` environment's model (small_pool stem, bf16 where the CPU has it) on a 4-epoch cosine
# schedule, one (strategy, seed) run per command, strategy by strategy with both seeds, so that
# whole rows of the table come first. Each finished run is appended to docs/ablation_cpu/ and
# logged to MLflow (experiment fer_ablation_cpu in ./mlflow.db) by the run itself, and its record
# is committed at once: a session that ends loses at most the run in progress. Runs already
# recorded are skipped (their fingerprint is in the records), so the script resumes where it stopped.
#
#   bash scripts/ablation_cpu.sh [STRATEGY ...]     # default: the six asked for first, then the rest
#
# Environment: DATA (default ../shared/datasets/fer2013), SEEDS (default "0 1"), COMMIT (default 1;
# 0: no commits), ABLATION_OUT (default docs/ablation_cpu), MLFLOW_URI (default ./mlflow.db),
# ABLATION_ARGS (appended to each command; the smoke test shrinks the runs with it).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${ABLATION_OUT:-docs/ablation_cpu}
data=${DATA:-../shared/datasets/fer2013}
seeds=${SEEDS:-0 1}
strategies=${*:-ce ae_oversample_ce aux_reconstruction weighted_ce logit_adjusted class_balanced_sampler \
ae_oversample_logit_adjusted ldam_drw cb_focal}
python=${PYTHON:-.venv/bin/python}
export DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true PYTHONUNBUFFERED=1

for strategy in $strategies; do
  for seed in $seeds; do
    $python benchmarks/ablation.py run --env cpu --data "$data" --epochs 4 --ae-epochs 3 \
      --only "$strategy" --seeds "$seed" --out "$out" --work build/ablation_cpu_work \
      --mlflow-uri "${MLFLOW_URI:-sqlite:///$(pwd)/mlflow.db}" --experiment fer_ablation_cpu ${ABLATION_ARGS:-} || exit 1
    if [ "${COMMIT:-1}" = 1 ]; then
      git add -- "$out/ablation_runs.jsonl"
      if ! git diff --cached --quiet -- "$out/ablation_runs.jsonl"; then
        for attempt in 1 2 3 4 5; do  # another git command may hold the index for a moment
          git commit -q -m "CPU ablation: $strategy seed $seed recorded" -- "$out/ablation_runs.jsonl" && break
          sleep 5
        done
      fi
    fi
  done
done
