"""Class-balance node: the summary, its table, the bar chart and finite metrics only."""

from __future__ import annotations

import numpy as np
import pytest

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.pipelines.class_balance.nodes import analyse_class_balance


def test_summary_table_plot_and_metrics(tiny_dataset):
    summary, table, figure, metrics = analyse_class_balance(tiny_dataset, {"beta": 0.99})
    train = tiny_dataset["splits"] == "train"
    assert summary["train_counts"] == np.bincount(tiny_dataset["labels"][train], minlength=7).tolist()
    assert list(table.columns) == ["split", "class", "count", "share"] and len(table) == 3 * 7
    assert len(figure.axes[0].patches) == 3 * 7
    assert metrics["class_balance.imbalance_ratio.train"]["value"] == pytest.approx(8 / 2)
    weights = [metrics[f"class_balance.weight_inverse_frequency.{c}"]["value"] for c in CLASSES]
    assert np.argmax(weights) == CLASSES.index("disgust")


def test_a_split_missing_a_class_logs_no_infinite_ratio(tiny_dataset):
    missing = {**tiny_dataset, "labels": np.where((tiny_dataset["splits"] == "test") & (tiny_dataset["labels"] == 1),
                                                  0, tiny_dataset["labels"])}
    summary, *_, metrics = analyse_class_balance(missing, {"beta": 0.99})
    assert summary["imbalance_ratio"]["test"] == float("inf")
    assert "class_balance.imbalance_ratio.test" not in metrics
