"""The augmentation stage's work: the classifier's training set (real train faces, plus synthetic
ones when asked) and what one epoch looks like under the sampler."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fer_pipeline.core.augmentation.transforms import sampling_weights
from fer_pipeline.core.ingestion.dataset import Dataset, class_names


def assemble_training_set(
    dataset: Dataset, synthetic: Dataset | None, params: Mapping[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Real train faces plus, when ``params["use_synthetic"]``, the synthetic ones: (training
    set, info: size, synthetic count, counts and expected sampled share per class under
    ``params["sampler"]``, the sampler). A dataset with soft targets (FER+
    ``ferplus_probability``) gives the training set ``targets`` too."""
    classes = class_names(dataset)
    train = dataset["splits"] == "train"
    images, labels = [dataset["images"][train]], [dataset["labels"][train]]
    flags = [np.zeros(int(train.sum()), dtype=bool)]
    if params["use_synthetic"]:
        if synthetic is None:
            raise ValueError("augmentation.use_synthetic is true but no synthetic faces were made")
        if len(synthetic["labels"]):
            images.append(synthetic["images"])
            labels.append(synthetic["labels"])
            flags.append(np.ones(len(synthetic["labels"]), dtype=bool))
    training_set = {
        "images": np.concatenate(images),
        "labels": np.concatenate(labels).astype(np.int64),
        "synthetic": np.concatenate(flags),
        "classes": np.array(classes),
    }
    if "targets" in dataset:
        # FER+ vote distributions for the real faces; a synthetic face's target is its own class.
        one_hot = np.eye(len(classes), dtype=np.float32)
        synthetic_labels = training_set["labels"][int(train.sum()):]
        training_set["targets"] = np.concatenate([dataset["targets"][train].astype(np.float32),
                                                  one_hot[synthetic_labels]])
    # What one epoch looks like to the model under the chosen sampler (expected class shares).
    weights = sampling_weights(training_set["labels"], params["sampler"])
    counts = np.bincount(training_set["labels"], minlength=len(classes)).astype(float)
    shares = counts if weights is None else np.bincount(training_set["labels"], weights=weights,
                                                        minlength=len(classes))
    shares = shares / shares.sum()
    info = {
        "training_set_size": int(len(training_set["labels"])),
        "synthetic_faces": int(training_set["synthetic"].sum()),
        "counts": dict(zip(classes, counts.astype(int).tolist())),
        "sampled_share": dict(zip(classes, shares.tolist())),
        "sampler": params["sampler"],
    }
    return training_set, info
