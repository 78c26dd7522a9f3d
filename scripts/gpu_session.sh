#!/usr/bin/env bash
# A GPU lent for minutes, used by one command (docs/results.md, "FER2013 on the GPU"):
#   1. the default pipeline on FER2013 (scripts/gpu_pipeline.py): first the naive-DataLoader
#      baseline, whose fast-path images/s size the training's epochs to the time (at most the
#      configured 60), and a torch.compile probe; then training, evaluation of PublicTest and
#      PrivateTest with and without ten-crop, the returned float16 model, and the CUDA resume check;
#   2. the imbalance ablation (benchmarks/ablation.py, conf/ablation.yml) with one epoch count for
#      every run, derived from step 1's measured epoch time so that all its runs fit in what is left;
#      each run's record is written as it ends.
# The text results go into one archive, $OUT/results.tar.gz, with the model parts and metrics.json
# beside it: a machine that returns at most 8 files gets them all. From the repository root:
#
#   OUT=/some/folder bash scripts/gpu_session.sh [SECONDS]     # SECONDS: the whole budget (default 560)
#
# OUT is required (the device tool sets it). Environment: DATA (default .gpu_data/fer2013.tar.gz),
# WORK (scratch, default build/gpu_work), RESULTS (default build/gpu_results), PYTHON (default
# python3), ABLATION_MIN_S (seconds the pipeline leaves the ablation at least, default 0: the full
# schedule comes first); PIPELINE_ARGS / ABLATION_ARGS are appended to each command: the CPU smoke
# test (tests/test_gpu_session.py) shrinks the runs with them.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder whose files come back}"
budget=${1:-560}
if [ "$budget" -lt 200 ] 2>/dev/null || ! [ "$budget" -eq "$budget" ] 2>/dev/null; then
  echo "gpu_session: the budget must be a number of seconds, 200 or more (got '$budget')" >&2
  exit 2
fi
data=${DATA:-.gpu_data/fer2013.tar.gz}
started=$(date +%s)
left() { echo $(( budget - ($(date +%s) - started) )); }
work=${WORK:-build/gpu_work}
results=${RESULTS:-build/gpu_results}
# only what this script writes there is removed: RESULTS may be any folder
rm -rf "$results/pipeline" "$results/ablation" "$results/machine.txt"
mkdir -p "$results/pipeline" "$results/ablation" "$OUT"
rm -f "$work/dataset.npz"  # the ablation reads this session's dataset, never an earlier one
export PYTHONUNBUFFERED=1 PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
python=${PYTHON:-python3}

pack() {
  mv "$results"/pipeline/resnet34_fp16.pt.part* "$OUT"/ 2>/dev/null
  cp "$results/pipeline/metrics.json" "$OUT"/ 2>/dev/null
  tar czf "$OUT/results.tar.gz" -C "$(dirname "$results")" "$(basename "$results")"
  echo "gpu_session: $(( $(date +%s) - started )) s in all; returned: $(ls "$OUT" | tr '\n' ' ')"
}
trap pack EXIT

{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv 2>&1
  $python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
} > "$results/machine.txt"
cat "$results/machine.txt"

# 1. The pipeline: its training ends --reserve-s before its deadline, ABLATION_MIN_S before the
#    budget's end less 25 s for packing.
ablation_min=${ABLATION_MIN_S:-0}
timeout -k 10 -s TERM $(( $(left) - 25 )) $python scripts/gpu_pipeline.py --data "$data" --out "$results/pipeline" \
  --work "$work" --fresh --naive-baseline-steps 200 --compile-probe-steps 30 --resume-check-steps 20 \
  --deadline-s $(( $(left) - ablation_min - 25 )) --reserve-s 75 --save-dataset "$work/dataset.npz" \
  --set evaluate.tta=choose_on_val ${PIPELINE_ARGS:-}
echo "gpu_session: pipeline exit $?, $(left) s left"

# 2. The ablation, sized to what is left (less 20 s to pack).
fit=$(( $(left) - 20 ))
if [ "$fit" -gt 30 ] && [ -f "$work/dataset.npz" ]; then
  timeout -k 10 -s TERM "$fit" $python benchmarks/ablation.py run --data "$work/dataset.npz" \
    --out "$results/ablation" --work "$work" --fit-seconds "$fit" \
    --timing-from "$results/pipeline/metrics.json" --run-overhead-s 3 ${ABLATION_ARGS:-}
  echo "gpu_session: ablation exit $?, $(left) s left"
else
  echo "gpu_session: no time or no dataset left for the ablation ($fit s)"
fi
