"""A small labelled example with hand-known metrics, shared by the metrics and the plot tests."""

from __future__ import annotations

import numpy as np

CLASSES5 = ("a", "b", "c", "d", "e")
# Class "d" never occurs in the labels but is predicted once; class "e" occurs nowhere.
LABELS = np.array([0, 0, 0, 1, 1, 2, 2])
PREDS = np.array([0, 0, 1, 1, 1, 3, 0])
SECOND = np.array([1, 2, 0, 0, 0, 2, 1])  # top-2 misses only sample 6


def example_logits() -> np.ndarray:
    logits = np.zeros((len(LABELS), len(CLASSES5)))
    logits[np.arange(len(LABELS)), PREDS] = 2.0
    logits[np.arange(len(LABELS)), SECOND] = 1.0
    return logits
