"""The quality report: counts per split and class, quarantine reasons, warnings, nothing usable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fer_pipeline.core.ingestion import (
    IngestionError,
    apply_duplicate_policy,
    find_duplicates,
    ingest,
    quality_report,
)

from .helpers import check_consistent, make_class_tree


def test_quality_report_counts_quarantine_and_zero_classes(tmp_path: Path) -> None:
    make_class_tree(tmp_path, per_class=2)
    (tmp_path / "fear" / "bad.jpg").write_bytes(b"")
    for path in (tmp_path / "disgust").iterdir():
        path.unlink()
    result = ingest(tmp_path, val_fraction=0.0, test_fraction=0.0, progress=False)
    dup = find_duplicates(result.images, result.labels, result.splits, result.byte_hashes)
    keep, dropped = apply_duplicate_policy(result, dup, "drop_leaked")
    report = quality_report(result, dup, keep, dropped)
    json.dumps(report)
    assert report["read"] == 13 and report["kept"] == 12 and report["quarantined"] == 1
    assert report["reasons"] == {"empty_file": 1}
    assert report["counts"]["train"]["disgust"] == 0 and report["counts"]["test"]["angry"] == 0
    assert report["quarantine"] == [{"item": "fear/bad.jpg", "reason": "empty_file: file is empty (0 bytes)"}]
    assert any(w["item"] == "disgust" for w in report["warnings"])



def test_nothing_usable_still_reports(tmp_path: Path) -> None:
    (tmp_path / "angry").mkdir()
    (tmp_path / "angry" / "a.jpg").write_bytes(b"")
    (tmp_path / "angry" / "b.txt").write_text("x")
    result = ingest(tmp_path, progress=False)
    check_consistent(result)
    assert result.read == 2 and len(result.labels) == 0
    dup = find_duplicates(result.images, result.labels, result.splits, result.byte_hashes)
    keep, dropped = apply_duplicate_policy(result, dup, "drop_leaked")
    report = quality_report(result, dup, keep, dropped)
    assert (report["read"], report["kept"], report["quarantined"]) == (2, 0, 2)
    assert report["duplicates"]["groups"] == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(IngestionError, match="no files found"):
        ingest(empty, progress=False)



def test_a_report_without_a_required_split_stops_with_the_reasons_counted(tmp_path: Path) -> None:
    """A folder with no <class>/ level (the faces at its root) keeps nothing: the check says why."""
    from fer_pipeline.core.ingestion import check_required_splits

    from .helpers import face, write_jpg

    for k in range(5):
        write_jpg(tmp_path / f"face_{k}.jpg", face(k))
    (tmp_path / "notes.txt").write_text("x")
    result = ingest(tmp_path, progress=False)
    report = quality_report(result, find_duplicates(result.images, result.labels, result.splits, result.byte_hashes))
    assert report["kept"] == 0
    with pytest.raises(IngestionError) as raised:
        check_required_splits(report)
    message = str(raised.value)
    assert message.startswith("ingestion kept no face of the train/val/test splits (read 5, kept 0: "
                              "train 0, val 0, test 0; quarantined 5). Nothing was written.")
    assert "quarantine reasons: not_in_class_folder 5" in message
    assert "e.g. face_0.jpg: not_in_class_folder" in message and "face_3.jpg" not in message  # 3 examples
    assert "angry, disgust, fear" in message  # the class folder names it looks for

    # only the splits asked for count; a kept split passes
    make_class_tree(tmp_path / "classes", per_class=10)
    result = ingest(tmp_path / "classes", val_fraction=0.0, test_fraction=0.2, progress=False)
    report = quality_report(result, find_duplicates(result.images, result.labels, result.splits, result.byte_hashes))
    check_required_splits(report, ["train", "test"])
    with pytest.raises(IngestionError, match=r"of the val split \(read 70, kept 70: train 56, val 0, test 14"):
        check_required_splits(report)
    with pytest.raises(ValueError, match="unknown split"):
        check_required_splits(report, ["train", "validation"])
    with pytest.raises(ValueError, match="must be a list of split names"):
        check_required_splits(report, "train")  # `required_splits: train` in YAML
