"""Augmentation stage: assemble the classifier's training set and preview the batch policy."""

from __future__ import annotations

from typing import Any

import numpy as np

from fer_pipeline import plots
from fer_pipeline.core.augmentation import training_set as training_sets
from fer_pipeline.kedro_glue.tracking import point_metrics


def assemble_training_set(
    fer_dataset: dict[str, np.ndarray], synthetic_faces: dict[str, np.ndarray], params: dict[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Real train faces plus, when enabled, the autoencoder's synthetic ones (train split only)."""
    training_set, info = training_sets.assemble_training_set(fer_dataset, synthetic_faces, params)
    metrics = {"augmentation.training_set_size": float(info["training_set_size"]),
               "augmentation.synthetic_faces": float(info["synthetic_faces"])}
    for name, n in info["counts"].items():
        metrics[f"augmentation.count.{name}"] = float(n)
        metrics[f"augmentation.sampled_share.{name}"] = float(info["sampled_share"][name])
    return training_set, point_metrics(metrics)


def preview_augmentation(training_set: dict[str, np.ndarray], params: dict[str, Any]):
    classes = [str(c) for c in training_set["classes"]]
    real = ~training_set["synthetic"]
    return plots.preview_grid(
        training_set["images"][real], training_set["labels"][real], params["policy"], classes,
        per_class=6, seed=params["seed"],
    )
