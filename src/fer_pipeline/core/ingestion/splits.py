"""Stratified split draws, seeded per (seed, draw, class), for trees without split folders."""

from __future__ import annotations

import numpy as np

from fer_pipeline.core.classes import CLASSES, SPLITS


def stratified_draw(
    labels: np.ndarray, candidates: np.ndarray, fraction: float, seed: int, salt: int
) -> np.ndarray:
    """Boolean mask: ``round(fraction * n_c)`` of each class c among ``candidates``, by seed.

    ``salt`` tells the draws of one ingestion apart (0: test, 1: val of a class-only tree;
    2 + the split's index in SPLITS: a split carved out of train).
    """
    chosen = np.zeros(len(labels), bool)
    if fraction <= 0:
        return chosen
    for label in range(len(CLASSES)):
        members = np.flatnonzero(candidates & (labels == label))
        take = int(round(fraction * len(members)))
        if take == 0:
            continue
        # One generator per (seed, draw, class): a class's split does not depend on the others.
        rng = np.random.default_rng([seed, salt, label])
        chosen[rng.permutation(members)[:take]] = True
    return chosen


def assign_missing_splits(
    labels: np.ndarray, splits: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> np.ndarray:
    """Splits with the unset ones ("", class-only trees) drawn: test, then val, the rest train."""
    splits = splits.copy()
    unset = splits == ""
    if unset.any():
        test = stratified_draw(labels, unset, test_fraction, seed, 0)
        # val fraction is of the whole, so rescale to what remains after test.
        rest = unset & ~test
        val_share = val_fraction / (1.0 - test_fraction) if test_fraction < 1 else 0.0
        val = stratified_draw(labels, rest, val_share, seed, 1)
        splits[unset] = "train"
        splits[test] = "test"
        splits[val] = "val"
    return splits


def carve_missing_splits(
    labels: np.ndarray, splits: np.ndarray, val_fraction: float, test_fraction: float, seed: int,
    warnings: list[dict],
) -> None:
    """For a split tree without val/ or test/: draw the missing split out of train, stratified.

    Changes ``splits`` in place and appends a ``missing_split`` warning for each split drawn.
    """
    for split_name, fraction in (("test", test_fraction), ("val", val_fraction)):
        if len(splits) and not (splits == split_name).any() and fraction > 0:
            drawn = stratified_draw(labels, splits == "train", fraction, seed, 2 + SPLITS.index(split_name))
            splits[drawn] = split_name
            warnings.append({"item": ".", "reason": f"missing_split: no {split_name} folder; "
                             f"drew {int(drawn.sum())} {split_name} images from train "
                             f"(stratified, seed {seed})"})
