"""core.class_balance.summary: the class-balance stage's numbers, on tiny drawn faces."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fer_pipeline.core.class_balance.summary import class_balance_summary
from fer_pipeline.core.classes import CLASSES
from tests.core.stage_data import TRAIN_COUNTS, stage_dataset


@pytest.fixture(scope="module")
def dataset() -> dict[str, np.ndarray]:
    """A canonical dataset dict (as ingestion makes it) of drawn faces."""
    return stage_dataset()


def test_class_balance_summary_numbers(dataset):
    summary, table = class_balance_summary(dataset, {"beta": 0.9})
    counts = np.array(TRAIN_COUNTS, dtype=float)
    assert summary["classes"] == list(CLASSES)
    assert summary["train_counts"] == TRAIN_COUNTS and summary["beta"] == 0.9
    assert summary["inverse_frequency"] == pytest.approx(counts.sum() / (7 * counts))
    effective = 1.0 / ((1.0 - 0.9 ** counts) / (1.0 - 0.9))
    assert summary["effective_number"] == pytest.approx(effective * 7 / effective.sum())
    assert summary["log_priors"] == pytest.approx(np.log(counts / counts.sum()))
    # largest / smallest per split; a split missing a class is infinitely imbalanced
    assert summary["imbalance_ratio"] == {"train": 6.0, "val": 1.0, "test": math.inf}
    assert len(table) == 3 * 7
    train_rows = [row for row in table if row["split"] == "train"]
    assert [row["count"] for row in train_rows] == TRAIN_COUNTS
    assert sum(row["share"] for row in train_rows) == pytest.approx(1.0)
    assert next(r for r in table if r["split"] == "test" and r["class"] == "surprise")["count"] == 0
