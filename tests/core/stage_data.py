"""The tiny drawn-face dataset that the stage tests share (formerly tests/core/test_stages.py's fixtures)."""

from __future__ import annotations

import numpy as np

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.demo import draw_face

#: Train / val / test faces per class; "test" lacks the last class (surprise).
TRAIN_COUNTS = [8, 2, 4, 12, 6, 5, 3]
VAL_COUNTS = [1] * 7
TEST_COUNTS = [1, 1, 1, 1, 1, 1, 0]
TINY_AE = {"latent_dim": 16, "base_channels": 4, "epochs": 1, "batch_size": 16, "lr": 0.002, "weight_decay": 0.0,
           "weighting": "effective_number", "beta": 0.999, "deepsmote": False, "seed": 0, "device": "cpu",
           "amp": False, "compare_unweighted": True,
           "oversampling": {"enabled": True, "fraction_of_largest": 0.5, "k": 2, "seed": 0}}


def drawn_faces(counts, rng) -> tuple[np.ndarray, np.ndarray]:
    """``counts[c]`` drawn faces of each class c, grouped by class, and their labels."""
    labels = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    return np.stack([draw_face(int(c), rng) for c in labels]), labels


def stage_dataset() -> dict[str, np.ndarray]:
    """A canonical dataset dict (as ingestion makes it) of drawn faces."""
    rng = np.random.default_rng(0)
    parts = {split: drawn_faces(counts, rng) for split, counts in
             (("train", TRAIN_COUNTS), ("val", VAL_COUNTS), ("test", TEST_COUNTS))}
    return {
        "images": np.concatenate([images for images, _ in parts.values()]),
        "labels": np.concatenate([labels for _, labels in parts.values()]),
        "splits": np.concatenate([np.full(len(labels), split) for split, (_, labels) in parts.items()]),
        "source_ids": np.array([f"face_{i}" for i in range(sum(len(l) for _, l in parts.values()))]),
        "classes": np.array(CLASSES),
    }
