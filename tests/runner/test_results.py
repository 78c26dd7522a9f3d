"""fer_pipeline.runner.results: the GPU runner's closing table, on the committed H200 run."""

from __future__ import annotations

import json
from pathlib import Path

from fer_pipeline.runner.results import results_table

METRICS = Path(__file__).resolve().parents[2] / "docs" / "gpu" / "metrics.json"


def test_closing_table_has_stages_metrics_and_the_throughput_ratio():
    metrics = json.loads(METRICS.read_text(encoding="utf-8"))
    table = results_table(metrics)
    assert "NVIDIA H200" in table and "training" in table and "10,181 img/s" in table
    assert "PrivateTest (test)        none          0.7205" in table
    assert "PrivateTest -289 leaked" in table
    assert "fast 13,009 img/s, naive DataLoader (8 workers) 5,538 img/s: 2.35x" in table


def test_closing_table_without_the_naive_path():
    """--deadline-s alone times the fast path only: no ratio line, and no crash on its None."""
    metrics = json.loads(METRICS.read_text(encoding="utf-8"))
    metrics["naive_baseline"].update(naive_images_per_s=None, speedup=None)
    table = results_table(metrics)
    assert "naive DataLoader" not in table and "PrivateTest (test)" in table
