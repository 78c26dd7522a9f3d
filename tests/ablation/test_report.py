"""fer_pipeline.ablation.report through benchmarks/ablation.py report: the best on val, never test."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fer_pipeline.ablation.report import COLUMNS, best_strategy, column_name, summarize, versus_baseline
from tests.gpu_machine import ABLATION


def _record(strategy: str, seed: int, val_f1: float, test_f1: float) -> dict:
    return {"strategy": strategy, "seed": seed, "fingerprint": f"{strategy}-fp", "schedule": "s", "epochs": 15,
            "loss": "ce", "val_macro_f1": val_f1, "val_accuracy": 0.6, "test_accuracy": 0.6,
            "test_macro_f1": test_f1, "test_balanced_accuracy": 0.55, "train_seconds": 60.0 + seed,
            "test_recall": {"disgust": 0.3, "fear": 0.4}, "val_recall": {"disgust": 0.3, "fear": 0.4},
            "test_clean_accuracy": 0.58 + seed / 100, "test_clean_macro_f1": test_f1 - 0.01,
            "test_clean_recall": {"disgust": 0.2 + seed / 10, "fear": 0.35},
            "select_split": "val", "overrides": {}}


def test_the_gap_to_the_baseline_says_whether_it_is_larger_than_the_seeds_spread():
    rows = summarize([_record("ce", 0, 0.60, 0.6), _record("ce", 1, 0.61, 0.6),
                      _record("far", 0, 0.65, 0.6), _record("far", 1, 0.66, 0.6),
                      _record("near", 0, 0.60, 0.6), _record("near", 1, 0.62, 0.6), _record("single", 0, 0.7, 0.6)])
    by_name = {row["strategy"]: row for row in rows}
    assert versus_baseline(by_name["ce"], by_name["ce"]) == "–"
    assert versus_baseline(by_name["far"], by_name["ce"]) == "+5.0 (beyond ±1.4)"  # stds 0.7 + 0.7
    assert versus_baseline(by_name["near"], by_name["ce"]) == "+0.5 (within ±2.1)"  # stds 0.7 + 1.4
    assert versus_baseline(by_name["single"], by_name["ce"]) == "+9.5 (one seed)"
    assert versus_baseline(by_name["far"], None) == "–"


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
    assert "| **val_winner** (best) | 0,1 | 63.0 ± 1.4 | – |" in text  # no ce here: no gap column
    assert "| test_winner | 0,1 | 56.0 ± 1.4 |" in text
    assert "clean test macro-F1" in text.splitlines()[0]
    assert "Best strategy by mean PublicTest (val) macro-F1: **val_winner**" in text
    assert chart.stat().st_size > 1000 and "4 runs logged" in result.stdout

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("fer_ablation")
    logged = client.search_runs([experiment.experiment_id])
    assert sorted((r.data.params["strategy"], r.data.params["seed"]) for r in logged) == [
        ("test_winner", "0"), ("test_winner", "1"), ("val_winner", "0"), ("val_winner", "1")]
    assert all("val_macro_f1" in r.data.metrics and "test_recall.disgust" in r.data.metrics for r in logged)

    # The records, the MLflow runs and the table agree: every column of every run is in MLflow with
    # the record's value, and the table's cells are what those MLflow values give.
    by_key = {(r["strategy"], str(r["seed"])): r for r in records}
    from_mlflow = []
    for run in logged:
        record = by_key[(run.data.params["strategy"], run.data.params["seed"])]
        metrics = run.data.metrics
        for key, *_ in COLUMNS:
            name = key if isinstance(key, str) else f"{key[0]}.{key[1]}"
            expected = record[key] if isinstance(key, str) else record[key[0]][key[1]]
            assert metrics[name] == pytest.approx(expected), name
        from_mlflow.append({"strategy": run.data.params["strategy"], "seed": int(run.data.params["seed"]),
                            **{k: v for k, v in metrics.items() if "." not in k},
                            **{group: {n.split(".", 1)[1]: v for n, v in metrics.items() if n.startswith(group + ".")}
                               for group in ("test_recall", "test_clean_recall")}})
    rows, again = summarize(records), {row["strategy"]: row for row in summarize(from_mlflow)}
    for row in rows:
        for key, *_ in COLUMNS:
            assert again[row["strategy"]][column_name(key)] == pytest.approx(row[column_name(key)], nan_ok=True)


def test_the_published_cpu_ablation_table_is_what_the_committed_records_give():
    """A figure no command reproduces is a bug: each row of the CPU ablation's table (the report's
    file, which docs/ablation.md includes as it is) is the report's row for the committed records
    of the strategies it shows (runs recorded since, of other strategies, may wait for the next
    report)."""
    from pathlib import Path

    from fer_pipeline.ablation.records import read_runs
    from fer_pipeline.ablation.report import markdown_report

    root = Path(__file__).resolve().parents[2]
    text = (root / "docs/ablation_cpu/table.md").read_text(encoding="utf-8")
    assert '--8<-- "docs/ablation_cpu/table.md"' in (root / "docs/ablation.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| strategy")]
    shown = {row.split("|")[1].strip().strip("*").split("*")[0].strip() for row in rows}
    records = [r for r in read_runs([root / "docs/ablation_cpu/ablation_runs.jsonl"]) if r["strategy"] in shown]
    assert len(rows) >= 6 and len(shown) == len(rows)
    expected = markdown_report(records, [row.split("|")[1].strip().strip("*").split("*")[0].strip() for row in rows])
    for row in rows:
        assert row in expected.splitlines(), row
