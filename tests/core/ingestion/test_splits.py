"""Stratified split draws: class-only trees, and split trees missing val/ or test/."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_pipeline.core.classes import CLASSES, SPLITS
from fer_pipeline.core.ingestion import ingest

from .helpers import check_consistent, face, make_class_tree, write_png


def test_image_folder_stratified_split_is_deterministic(tmp_path: Path) -> None:
    make_class_tree(tmp_path, per_class=20)
    a = ingest(tmp_path, val_fraction=0.2, test_fraction=0.1, seed=7, progress=False)
    b = ingest(tmp_path, val_fraction=0.2, test_fraction=0.1, seed=7, progress=False)
    c = ingest(tmp_path, val_fraction=0.2, test_fraction=0.1, seed=8, progress=False)
    check_consistent(a)
    np.testing.assert_array_equal(a.splits, b.splits)
    assert not np.array_equal(a.splits, c.splits)
    for label in range(len(CLASSES)):  # stratified: every class split 14 / 4 / 2
        in_class = a.splits[a.labels == label]
        assert [(in_class == s).sum() for s in SPLITS] == [14, 4, 2]



def test_split_tree_without_val_draws_val_from_train(tmp_path: Path) -> None:
    for label, name in enumerate(CLASSES):
        for k in range(10):
            write_png(tmp_path / "train" / name / f"{k}.png", face(500 + 10 * label + k))
        write_png(tmp_path / "test" / name / "t.png", face(900 + label))
    result = ingest(tmp_path, val_fraction=0.2, progress=False)
    assert [(result.splits == s).sum() for s in SPLITS] == [56, 14, 7]
    assert any(w["reason"].startswith("missing_split") for w in result.warnings)

