"""fer_pipeline.ablation.report through benchmarks/ablation.py report: the best on val, never test."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fer_pipeline.ablation.report import best_strategy, summarize
from tests.gpu_machine import ABLATION


def _record(strategy: str, seed: int, val_f1: float, test_f1: float) -> dict:
    return {"strategy": strategy, "seed": seed, "fingerprint": f"{strategy}-fp", "schedule": "s", "epochs": 15,
            "loss": "ce", "val_macro_f1": val_f1, "val_accuracy": 0.6, "test_accuracy": 0.6,
            "test_macro_f1": test_f1, "test_balanced_accuracy": 0.55, "train_seconds": 60.0,
            "test_recall": {"disgust": 0.3, "fear": 0.4}, "val_recall": {"disgust": 0.3, "fear": 0.4},
            "select_split": "val", "overrides": {}}


@pytest.mark.slow
def test_report_picks_best_on_val_not_test(tmp_path):
    # val says "val_winner", test says "test_winner": the choice must follow val
    records = [_record("val_winner", 0, 0.62, 0.50), _record("val_winner", 1, 0.64, 0.52),
               _record("test_winner", 0, 0.55, 0.70), _record("test_winner", 1, 0.57, 0.72)]
    runs_file = tmp_path / "runs.jsonl"
    runs_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    rows = summarize(records)
    assert best_strategy(rows) == "val_winner"
    by_name = {row["strategy"]: row for row in rows}
    assert by_name["val_winner"]["val_macro_f1"] == pytest.approx((0.63, 0.0141421), abs=1e-6)  # mean, std
    assert by_name["test_winner"]["test_macro_f1"][0] == pytest.approx(0.71)

    chart, table, db = tmp_path / "chart.png", tmp_path / "table.md", tmp_path / "mlflow.db"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    result = subprocess.run(
        [sys.executable, str(ABLATION), "report", "--runs", str(runs_file), "--chart", str(chart), "--markdown",
         str(table), "--mlflow", "--mlflow-uri", f"sqlite:///{db}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    text = table.read_text()
    assert "| **val_winner** (best) | 0,1 | 63.0 ± 1.4 |" in text
    assert "| test_winner | 0,1 | 56.0 ± 1.4 |" in text
    assert "Best strategy by mean PublicTest (val) macro-F1: **val_winner**" in text
    assert chart.stat().st_size > 1000 and "4 runs logged" in result.stdout

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("fer_ablation")
    logged = client.search_runs([experiment.experiment_id])
    assert sorted((r.data.params["strategy"], r.data.params["seed"]) for r in logged) == [
        ("test_winner", "0"), ("test_winner", "1"), ("val_winner", "0"), ("val_winner", "1")]
    assert all("val_macro_f1" in r.data.metrics and "test_recall.disgust" in r.data.metrics for r in logged)
