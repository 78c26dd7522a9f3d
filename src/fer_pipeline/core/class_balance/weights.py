"""Class-balance statistics: counts, imbalance ratio, class weights and log-priors.

Formulas (K classes, n_c samples of class c, N = sum n_c):

* inverse frequency:   w_c = N / (K * n_c)                     (mean over samples = 1)
* effective number:    E_c = (1 - beta**n_c) / (1 - beta)       (Cui et al., CVPR 2019)
                       w_c = (1 / E_c) * K / sum_j (1 / E_j)    (weights sum to K)
* log-priors:          log(n_c / N)                             (for logit adjustment)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fer_pipeline.core.classes import CLASSES, SPLITS


def class_counts(labels: np.ndarray, num_classes: int = len(CLASSES)) -> np.ndarray:
    """Number of samples per class (int64, length ``num_classes``)."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    return np.bincount(labels, minlength=num_classes).astype(np.int64)


def _check_counts(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError("counts must be a non-empty 1-d sequence")
    if (counts <= 0).any():
        empty = [i for i, n in enumerate(counts) if n <= 0]
        raise ValueError(f"every class needs at least one sample; empty classes at indices {empty}")
    return counts


def inverse_frequency_weights(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """w_c = N / (K * n_c): a balanced dataset gets all ones."""
    counts = _check_counts(counts)
    return counts.sum() / (counts.size * counts)


def effective_number_weights(counts: Sequence[int] | np.ndarray, beta: float = 0.999) -> np.ndarray:
    """Class-balanced weights of Cui et al. (2019), normalised to sum to K.

    beta = 0 gives equal weights; beta -> 1 approaches inverse frequency.
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    counts = _check_counts(counts)
    effective = (1.0 - np.power(beta, counts)) / (1.0 - beta)
    weights = 1.0 / effective
    return weights * counts.size / weights.sum()


def log_priors(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """log(n_c / N), the additive logit adjustment of Menon et al. (2021)."""
    counts = _check_counts(counts)
    return np.log(counts / counts.sum())


def class_weights(counts: Sequence[int] | np.ndarray, scheme: str, beta: float = 0.999) -> np.ndarray:
    """Weights by name: ``none`` (ones), ``inverse_frequency`` or ``effective_number``."""
    if scheme == "none":
        return np.ones(len(counts), dtype=np.float64)
    if scheme == "inverse_frequency":
        return inverse_frequency_weights(counts)
    if scheme == "effective_number":
        return effective_number_weights(counts, beta)
    raise ValueError(f"unknown weighting scheme {scheme!r}: use none, inverse_frequency or effective_number")


def imbalance_ratio(counts: Sequence[int] | np.ndarray) -> float:
    """Largest class count over smallest."""
    counts = _check_counts(counts)
    return float(counts.max() / counts.min())


def split_class_table(
    labels: np.ndarray, splits: np.ndarray, classes: Sequence[str] = CLASSES
) -> list[dict]:
    """One row per (split, class): count and share of the split (splits in SPLITS order)."""
    rows = []
    for split in SPLITS:
        mask = np.asarray(splits) == split
        if not mask.any():
            continue
        counts = np.bincount(np.asarray(labels)[mask], minlength=len(classes))
        total = counts.sum()
        for name, n in zip(classes, counts):
            rows.append({"split": split, "class": name, "count": int(n), "share": float(n / total)})
    return rows
