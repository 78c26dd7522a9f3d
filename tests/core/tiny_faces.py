"""Tiny learnable faces for the training-loop tests: brightness grows with the class index."""

from __future__ import annotations

import numpy as np


def tiny_faces(n_train: int, n_val: int, size: int = 16, seed: int = 0) -> tuple[np.ndarray, ...]:
    """(train_images, train_labels, val_images, val_labels, class_counts): uint8 (N,size,size)
    faces of labels 0..6 in turn, a class's brightness plus noise."""
    rng = np.random.default_rng(seed)
    train_labels = np.arange(n_train) % 7
    val_labels = np.arange(n_val) % 7

    def make(labels):
        base = (labels[:, None, None] * 30 + 20).astype(np.int16)
        return np.clip(base + rng.integers(-15, 16, (len(labels), size, size)), 0, 255).astype(np.uint8)

    return make(train_labels), train_labels, make(val_labels), val_labels, np.bincount(train_labels, minlength=7)
