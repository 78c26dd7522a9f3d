"""Shared by the ingestion tests: distinct random faces, image writers, dataset trees, checks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fer_pipeline.core.classes import CLASSES, SPLITS
from fer_pipeline.core.ingestion import IngestionResult


def face(seed: int, size: int = 48) -> np.ndarray:
    """A distinct random grayscale face (distinct seeds never collide at 48x48)."""
    return np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)


def write_png(path: Path, pixels: np.ndarray, compression: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), pixels, [cv2.IMWRITE_PNG_COMPRESSION, compression])
    return path


def write_jpg(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), pixels)
    return path


def make_fer_folder(root: Path) -> dict[str, tuple[str, int]]:
    """FER layout: 2 Training_ per class in train/, 1 PublicTest_ and 1 PrivateTest_ per class in test/.

    Returns source_id -> (split, label).
    """
    expected = {}
    seed = 0
    for label, name in enumerate(CLASSES):
        for prefix, folder, split in (("Training", "train", "train"), ("Training", "train", "train"),
                                      ("PublicTest", "test", "val"), ("PrivateTest", "test", "test")):
            seed += 1
            rel = f"{folder}/{name}/{prefix}_{seed}.jpg"
            write_jpg(root / rel, face(seed))
            expected[rel] = (split, label)
    return expected


def check_consistent(result: IngestionResult) -> None:
    n = len(result.labels)
    assert result.images.shape == (n, 48, 48) and result.images.dtype == np.uint8
    assert result.labels.dtype == np.int64
    assert len(result.splits) == len(result.source_ids) == len(result.byte_hashes) == n
    assert set(result.splits.tolist()) <= set(SPLITS)
    assert result.read == n + len(result.quarantine)


def reasons_for(result: IngestionResult, item: str) -> list[str]:
    return [q["reason"] for q in result.quarantine if q["item"] == item]


def make_class_tree(root: Path, per_class: int = 20) -> None:
    for label, name in enumerate(CLASSES):
        for k in range(per_class):
            write_png(root / name / f"{k:03d}.png", face(1000 * label + k))

