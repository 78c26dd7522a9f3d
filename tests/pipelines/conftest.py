"""Tiny data for the node tests: a canonical dataset of drawn faces, and tiny stage parameters."""

from __future__ import annotations

import numpy as np
import pytest

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.demo import draw_face

#: Train / val / test faces per class.
TRAIN_COUNTS = [6, 2, 4, 8, 5, 4, 3]


@pytest.fixture(scope="session")
def tiny_dataset() -> dict[str, np.ndarray]:
    """A canonical dataset dict (as ingestion makes it) of drawn faces, every class in every split."""
    rng = np.random.default_rng(0)
    labels = np.concatenate([np.repeat(np.arange(7), TRAIN_COUNTS), np.arange(7), np.arange(7)]).astype(np.int64)
    splits = np.array(["train"] * sum(TRAIN_COUNTS) + ["val"] * 7 + ["test"] * 7)
    return {
        "images": np.stack([draw_face(int(c), rng) for c in labels]),
        "labels": labels,
        "splits": splits,
        "source_ids": np.array([f"face_{i}.jpg" for i in range(len(labels))]),
        "classes": np.array(CLASSES),
        "leaked": np.zeros(len(labels), bool),
    }


@pytest.fixture
def tiny_autoencoder_params() -> dict:
    return {"latent_dim": 16, "base_channels": 4, "epochs": 1, "batch_size": 16, "lr": 0.002, "weight_decay": 0.0,
            "weighting": "effective_number", "beta": 0.999, "deepsmote": False, "deepsmote_weight": 0.5,
            "deepsmote_class_batch": 100, "seed": 0, "device": "cpu", "amp": False, "compare_unweighted": True,
            "oversampling": {"enabled": True, "fraction_of_largest": 0.5, "k": 2, "seed": 0}}


@pytest.fixture
def tiny_training_params() -> dict:
    return {"model": {"arch": "resnet18", "stem": "imagenet"},
            "config": {"epochs": 2, "batch_size": 16, "steps_per_epoch": 1, "warmup_epochs": 0, "amp": False,
                       "device": "cpu", "ema": False, "lr": 0.01}}
