"""The class-balance stage's work: the train split's counts, weights and priors, and each split's imbalance."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fer_pipeline.core.class_balance import weights as cb
from fer_pipeline.core.classes import SPLITS
from fer_pipeline.core.ingestion.dataset import Dataset, class_names


def class_balance_summary(dataset: Dataset, params: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict]]:
    """(summary, split/class table rows). The summary: classes, train counts, ``beta``, the
    inverse-frequency and effective-number class weights and log-priors of the train counts,
    and ``imbalance_ratio`` per non-empty split (inf where a class is missing from it)."""
    classes = class_names(dataset)
    labels, splits = dataset["labels"], dataset["splits"]
    train_counts = cb.class_counts(labels[splits == "train"], len(classes))
    summary: dict[str, Any] = {
        "classes": classes,
        "train_counts": train_counts.tolist(),
        "beta": params["beta"],
        "inverse_frequency": cb.inverse_frequency_weights(train_counts).tolist(),
        "effective_number": cb.effective_number_weights(train_counts, params["beta"]).tolist(),
        "log_priors": cb.log_priors(train_counts).tolist(),
        "imbalance_ratio": {},
    }
    for split in SPLITS:
        counts = cb.class_counts(labels[splits == split], len(classes))
        if counts.sum() == 0:
            continue
        summary["imbalance_ratio"][split] = float(counts.max() / counts.min()) if counts.min() > 0 else float("inf")
    return summary, cb.split_class_table(labels, splits, classes)
