"""Augmentation stage: assemble the classifier's training set and preview the batch policy."""

from __future__ import annotations

from typing import Any

import numpy as np

from fer_pipeline.core.augment import preview_grid, sampling_weights
from fer_pipeline.pipelines.tracking import point_metrics


def assemble_training_set(
    fer_dataset: dict[str, np.ndarray], synthetic_faces: dict[str, np.ndarray], params: dict[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Real train faces plus, when enabled, the autoencoder's synthetic ones (train split only)."""
    classes = [str(c) for c in fer_dataset["classes"]]
    train = fer_dataset["splits"] == "train"
    images, labels = [fer_dataset["images"][train]], [fer_dataset["labels"][train]]
    synthetic = [np.zeros(int(train.sum()), dtype=bool)]
    if params["use_synthetic"] and len(synthetic_faces["labels"]):
        images.append(synthetic_faces["images"])
        labels.append(synthetic_faces["labels"])
        synthetic.append(np.ones(len(synthetic_faces["labels"]), dtype=bool))
    training_set = {
        "images": np.concatenate(images),
        "labels": np.concatenate(labels).astype(np.int64),
        "synthetic": np.concatenate(synthetic),
        "classes": np.array(classes),
    }
    # What one epoch looks like to the model under the chosen sampler (expected class shares).
    weights = sampling_weights(training_set["labels"], params["sampler"])
    counts = np.bincount(training_set["labels"], minlength=len(classes)).astype(float)
    if weights is None:
        shares = counts / counts.sum()
    else:
        shares = np.bincount(training_set["labels"], weights=weights, minlength=len(classes))
        shares = shares / shares.sum()
    metrics = {"augmentation.training_set_size": float(len(training_set["labels"])),
               "augmentation.synthetic_faces": float(training_set["synthetic"].sum())}
    for name, n, share in zip(classes, counts, shares):
        metrics[f"augmentation.count.{name}"] = float(n)
        metrics[f"augmentation.sampled_share.{name}"] = float(share)
    return training_set, point_metrics(metrics)


def preview_augmentation(training_set: dict[str, np.ndarray], params: dict[str, Any]):
    classes = [str(c) for c in training_set["classes"]]
    real = ~training_set["synthetic"]
    return preview_grid(
        training_set["images"][real], training_set["labels"][real], params["policy"], classes,
        per_class=6, seed=params["seed"],
    )
