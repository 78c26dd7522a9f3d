"""Augmentation nodes: the training set with or without synthetic faces, its metrics, the preview."""

from __future__ import annotations

import numpy as np
import pytest

from fer_pipeline.core.augmentation.transforms import DEFAULT_POLICY
from fer_pipeline.core.classes import CLASSES
from fer_pipeline.pipelines.augmentation.nodes import assemble_training_set, preview_augmentation


def test_training_set_metrics_and_preview(tiny_dataset):
    synthetic = {"images": np.zeros((3, 48, 48), np.uint8), "labels": np.array([1, 1, 6]), "classes": np.array(CLASSES)}
    params = {"use_synthetic": True, "sampler": "class_balanced", "seed": 0, "policy": DEFAULT_POLICY}
    training_set, metrics = assemble_training_set(tiny_dataset, synthetic, params)
    train = int((tiny_dataset["splits"] == "train").sum())
    assert len(training_set["labels"]) == train + 3 and training_set["synthetic"].sum() == 3
    assert metrics["augmentation.training_set_size"]["value"] == train + 3
    assert metrics["augmentation.synthetic_faces"]["value"] == 3
    assert metrics["augmentation.sampled_share.disgust"]["value"] == pytest.approx(1 / 7)
    figure = preview_augmentation(training_set, params)
    assert len(figure.axes) == 2 * 7 * 6  # original and augmented row per class, synthetic faces left out

    real_only, metrics = assemble_training_set(tiny_dataset, synthetic, {**params, "use_synthetic": False})
    assert not real_only["synthetic"].any() and metrics["augmentation.synthetic_faces"]["value"] == 0
