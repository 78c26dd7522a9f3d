"""Duplicates: byte- and pixel-identical groups, the drop_leaked policy, the leaked-item masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fer_pipeline.core.classes import CLASSES, SPLITS
from fer_pipeline.core.ingestion import (
    apply_duplicate_policy,
    find_duplicates,
    ingest,
    leaked_mask,
    leaked_mask_from_groups,
    quality_report,
)

from .helpers import face, write_png


def make_duplicate_tree(root: Path) -> None:
    """Split tree with: a byte-identical train/test pair, a pixel-identical (PNG levels 0 vs 9)
    train/val pair, a conflicting-label pair in train, a within-train pair, and unique faces."""
    leak, pixel_twin, conflict, within = face(1), face(2), face(3), face(4)
    write_png(root / "train/happy/leak.png", leak)
    write_png(root / "test/happy/leak_copy.png", leak)
    write_png(root / "train/fear/twin.png", pixel_twin, compression=0)
    write_png(root / "val/fear/twin.png", pixel_twin, compression=9)
    write_png(root / "train/angry/conflict.png", conflict)
    write_png(root / "train/sad/conflict.png", conflict)
    write_png(root / "train/neutral/a.png", within)
    write_png(root / "train/neutral/b.png", within)
    for k, name in enumerate(CLASSES):
        for split in ("train", "val", "test"):
            write_png(root / split / name / f"unique_{k}.png", face(10_000 + 10 * k + SPLITS.index(split)))



def test_find_duplicates_byte_pixel_cross_split_and_conflicts(tmp_path: Path) -> None:
    make_duplicate_tree(tmp_path)
    assert (tmp_path / "train/fear/twin.png").read_bytes() != (tmp_path / "val/fear/twin.png").read_bytes()
    result = ingest(tmp_path, progress=False)
    dup = find_duplicates(result.images, result.labels, result.splits, result.byte_hashes)
    assert dup["pixel_identical_groups"] == dup["groups"] == 4
    assert dup["byte_identical_groups"] == 3  # the PNG twin differs in bytes
    assert dup["files_in_groups"] == 8
    assert dup["cross_split_groups"] == 2 and dup["train_test_groups"] == 2
    assert dup["conflicting_label_groups"] == 1
    assert dup["byte"] == {"groups": 3, "files_in_groups": 6, "cross_split_groups": 1,
                           "train_test_groups": 1, "conflicting_label_groups": 1}
    ids = result.source_ids
    groups = sorted(sorted(ids[m].tolist()) for m in dup["members"])
    assert groups == [["test/happy/leak_copy.png", "train/happy/leak.png"],
                      ["train/angry/conflict.png", "train/sad/conflict.png"],
                      ["train/fear/twin.png", "val/fear/twin.png"],
                      ["train/neutral/a.png", "train/neutral/b.png"]]
    # Without byte hashes only pixel groups are found.
    assert find_duplicates(result.images, result.labels, result.splits)["byte_identical_groups"] == 0



def test_drop_leaked_policy_and_quality_report(tmp_path: Path) -> None:
    make_duplicate_tree(tmp_path)
    result = ingest(tmp_path, progress=False)
    dup = find_duplicates(result.images, result.labels, result.splits, result.byte_hashes)

    keep, dropped = apply_duplicate_policy(result, dup, "keep")
    assert keep.all() and dropped == []

    keep, dropped = apply_duplicate_policy(result, dup, "drop_leaked")
    reasons = {d["item"]: d["reason"] for d in dropped}
    assert set(reasons) == {"test/happy/leak_copy.png", "val/fear/twin.png",
                            "train/angry/conflict.png", "train/sad/conflict.png"}
    assert reasons["test/happy/leak_copy.png"].startswith("duplicate_leak:")
    assert "train/happy/leak.png" in reasons["test/happy/leak_copy.png"]
    assert reasons["train/sad/conflict.png"].startswith("duplicate_conflicting_labels:")
    kept_ids = set(result.source_ids[keep].tolist())
    assert {"train/happy/leak.png", "train/fear/twin.png", "train/neutral/a.png", "train/neutral/b.png"} <= kept_ids
    assert keep.sum() == len(result.labels) - 4

    report = quality_report(result, dup, keep, dropped, policy="drop_leaked")
    json.dumps(report)  # serialisable
    assert report["read"] == report["kept"] + report["quarantined"] == result.read
    assert report["kept"] == int(keep.sum()) and report["quarantined"] == 4
    assert report["reasons"] == {"duplicate_conflicting_labels": 2, "duplicate_leak": 2}
    assert set(report["counts"]) == set(SPLITS)
    assert all(set(report["counts"][s]) == set(CLASSES) for s in SPLITS)
    assert report["counts"]["test"]["happy"] == 1  # unique_3 only, the leaked copy is gone
    assert report["counts"]["train"]["sad"] == 1
    d = report["duplicates"]
    assert (d["groups"], d["byte_identical_groups"], d["pixel_identical_groups"]) == (4, 3, 4)
    assert (d["cross_split_groups"], d["train_test_groups"], d["conflicting_label_groups"]) == (2, 2, 1)
    assert d["files_in_groups"] == 8 and d["policy"] == "drop_leaked" and d["dropped"] == 4



def test_leaked_mask_from_arrays_matches_drop_leaked(tmp_path: Path) -> None:
    """Evaluation recomputes the leaked items from the dataset arrays alone: the same set."""
    make_duplicate_tree(tmp_path)
    result = ingest(tmp_path, progress=False)
    dup = find_duplicates(result.images, result.labels, result.splits, result.byte_hashes)
    keep, _ = apply_duplicate_policy(result, dup, "drop_leaked")
    leaked = leaked_mask(result.images, result.labels, result.splits)
    assert leaked.dtype == bool and np.array_equal(leaked, ~keep)
    assert sorted(result.source_ids[leaked].tolist()) == [
        "test/happy/leak_copy.png", "train/angry/conflict.png", "train/sad/conflict.png", "val/fear/twin.png"]
    # a duplicate pair between val and test only is no leak from train
    images = np.stack([face(1), face(1), face(2)])
    mask = leaked_mask(images, np.array([2, 2, 3]), np.array(["val", "test", "train"]))
    assert not mask.any()



def test_leaked_mask_from_groups_matches_leaked_mask(tmp_path: Path) -> None:
    """From the groups find_duplicates already found, the same mask as from the pixels."""
    make_duplicate_tree(tmp_path)
    result = ingest(tmp_path, progress=False)
    dup = find_duplicates(result.images, result.labels, result.splits, result.byte_hashes)
    from_groups = leaked_mask_from_groups(dup["members"], result.labels, result.splits)
    from_pixels = leaked_mask(result.images, result.labels, result.splits)
    assert from_groups.dtype == bool and from_groups.shape == (len(result.labels),)
    np.testing.assert_array_equal(from_groups, from_pixels)
    assert from_groups.sum() == 4
    assert not leaked_mask_from_groups([], result.labels, result.splits).any()
