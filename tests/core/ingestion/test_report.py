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

