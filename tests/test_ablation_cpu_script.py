"""scripts/ablation_cpu.sh, the CPU ablation's resumable driver, on tiny generated data."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fer_pipeline.ablation.records import read_runs
from tests.gpu_machine import REPO, TINY_ABLATION

SCRIPT = REPO / "scripts" / "ablation_cpu.sh"


@pytest.mark.slow
def test_runs_each_strategy_and_seed_once_and_resumes(fer_demo_folder, tmp_path):
    out = tmp_path / "records"
    env = {**os.environ, "DATA": str(fer_demo_folder), "SEEDS": "0 1", "COMMIT": "0", "ABLATION_OUT": str(out),
           "MLFLOW_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "ABLATION_ARGS": " ".join([*TINY_ABLATION, "--epochs", "1", "--threads", "1", "--work",
                                      str(tmp_path / "work")])}
    first = subprocess.run(["bash", str(SCRIPT), "ce"], env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    records = read_runs([out / "ablation_runs.jsonl"])
    assert [(r["strategy"], r["seed"], r["env"]) for r in records] == [("ce", 0, "cpu"), ("ce", 1, "cpu")]
    again = subprocess.run(["bash", str(SCRIPT), "ce"], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("0 to run") == 2  # both recorded: nothing trained
    assert len(read_runs([out / "ablation_runs.jsonl"])) == 2
