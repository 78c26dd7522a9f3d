"""Duplicate faces: byte- and pixel-identical groups, and what ``drop_leaked`` removes of them."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.ingestion.result import IngestionResult

DUPLICATE_POLICIES: tuple[str, ...] = ("keep", "drop_leaked")


def _groups_by_key(keys: np.ndarray) -> list[np.ndarray]:
    """Index arrays of the entries sharing a key, for keys that occur at least twice."""
    if len(keys) == 0:
        return []
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(counts)[:-1]
    return [g for g in np.split(order, bounds) if len(g) > 1]


def _pixel_keys(images: np.ndarray) -> np.ndarray:
    if len(images) == 0:
        return np.zeros(0, np.void)
    flat = np.ascontiguousarray(images.reshape(len(images), -1))
    return flat.view(np.dtype((np.void, flat.shape[1]))).ravel()


def _group_stats(groups: list[np.ndarray], labels: np.ndarray, splits: np.ndarray) -> dict[str, int]:
    cross = train_test = conflicting = 0
    for group in groups:
        group_splits = set(splits[group].tolist())
        cross += len(group_splits) > 1
        train_test += "train" in group_splits and bool(group_splits & {"val", "test"})
        conflicting += len(set(labels[group].tolist())) > 1
    return {
        "groups": len(groups),
        "files_in_groups": int(sum(len(g) for g in groups)),
        "cross_split_groups": int(cross),
        "train_test_groups": int(train_test),
        "conflicting_label_groups": int(conflicting),
    }


def find_duplicates(
    images: np.ndarray, labels: np.ndarray, splits: np.ndarray, byte_hashes: np.ndarray | None = None
) -> dict[str, Any]:
    """Byte-identical and pixel-identical groups (size >= 2), within and across splits.

    Top-level figures are for pixel-identical groups (same decoded pixels; every byte-identical
    group lies inside one); ``"byte"`` and ``"pixel"`` hold the figures for each kind.
    ``members``/``byte_members``: index lists, sorted by first index.
    """
    labels = np.asarray(labels)
    splits = np.asarray(splits)
    pixel_groups = _groups_by_key(_pixel_keys(np.asarray(images)))
    byte_groups: list[np.ndarray] = []
    if byte_hashes is not None:
        hashes = np.asarray(byte_hashes)
        present = np.flatnonzero(hashes != "")
        byte_groups = [present[g] for g in _groups_by_key(hashes[present])]
    pixel_groups.sort(key=lambda g: int(g[0]))
    byte_groups.sort(key=lambda g: int(g[0]))
    pixel = _group_stats(pixel_groups, labels, splits)
    byte = _group_stats(byte_groups, labels, splits)
    return {
        "groups": pixel["groups"],
        "byte_identical_groups": byte["groups"],
        "pixel_identical_groups": pixel["groups"],
        "files_in_groups": pixel["files_in_groups"],
        "cross_split_groups": pixel["cross_split_groups"],
        "train_test_groups": pixel["train_test_groups"],
        "conflicting_label_groups": pixel["conflicting_label_groups"],
        "byte": byte,
        "pixel": pixel,
        "members": [g.tolist() for g in pixel_groups],
        "byte_members": [g.tolist() for g in byte_groups],
    }


def apply_duplicate_policy(
    result: IngestionResult, duplicates: dict[str, Any], policy: str = "keep"
) -> tuple[np.ndarray, list[dict]]:
    """Mask of items to keep, and ``{"item", "reason"}`` for each dropped one.

    ``"drop_leaked"``: drop every member of a group with conflicting labels, and the val/test
    copies of images that also occur in train (pixel-identical groups).
    """
    if policy not in DUPLICATE_POLICIES:
        raise ValueError(f"policy must be one of {DUPLICATE_POLICIES}, got {policy!r}")
    keep = np.ones(len(result.labels), bool)
    dropped: list[dict] = []
    if policy == "keep":
        return keep, dropped
    for index, reason in _leaked_items(duplicates["members"], result.labels, result.splits, result.source_ids,
                                       result.classes):
        keep[index] = False
        dropped.append({"item": str(result.source_ids[index]), "reason": reason})
    return keep, dropped


def _leaked_items(
    members: list, labels: np.ndarray, splits: np.ndarray, source_ids: np.ndarray | None = None,
    classes: tuple[str, ...] = CLASSES,
) -> Iterator[tuple[int, str]]:
    """(index, reason) of every item ``drop_leaked`` removes from the duplicate groups ``members``."""
    for group_members in members:
        group = np.asarray(group_members)
        group_labels = labels[group]
        group_splits = splits[group]
        if len(set(group_labels.tolist())) > 1:
            # (callers without the class names pass the 7 classes; an eighth, FER+'s contempt, shows as its index)
            names = ", ".join(sorted({classes[v] if v < len(classes) else f"class {v}" for v in group_labels.tolist()}))
            for index in group:
                yield int(index), f"duplicate_conflicting_labels: {len(group)} identical images labelled {names}"
            continue
        in_train = group_splits == "train"
        if not in_train.any():
            continue
        first_train = group[in_train][0]
        train_copy = str(source_ids[first_train]) if source_ids is not None else f"#{int(first_train)}"
        for index, split in zip(group, group_splits):
            if split != "train":
                yield int(index), f"duplicate_leak: {split} image identical to train image {train_copy}"


def leaked_mask_from_groups(members: list, labels: np.ndarray, splits: np.ndarray) -> np.ndarray:
    """True for the items ``duplicates: drop_leaked`` would remove, given the pixel-identical
    groups ``members`` (``find_duplicates(...)["members"]``): nothing is recomputed from pixels."""
    labels, splits = np.asarray(labels), np.asarray(splits)
    mask = np.zeros(len(labels), bool)
    for index, _ in _leaked_items(members, labels, splits):
        mask[index] = True
    return mask


def leaked_mask(images: np.ndarray, labels: np.ndarray, splits: np.ndarray) -> np.ndarray:
    """True for the items ``duplicates: drop_leaked`` would remove, found from the arrays alone.

    Lets evaluation report a split both as published (duplicates kept) and without the copies of
    training images and the conflicting-label groups, from the same model and the same logits.
    """
    labels, splits = np.asarray(labels), np.asarray(splits)
    members = find_duplicates(images, labels, splits)["members"]
    return leaked_mask_from_groups(members, labels, splits)
