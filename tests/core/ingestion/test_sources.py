"""Source kinds and the folder listers: splits and classes from the tree, files out of place."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.ingestion import IngestionError, detect_source_kind, ingest

from .helpers import (
    check_consistent,
    face,
    make_class_tree,
    make_fer_folder,
    reasons_for,
    write_jpg,
    write_png,
)


def test_fer_folder_splits_from_file_prefix(tmp_path: Path) -> None:
    expected = make_fer_folder(tmp_path)
    assert detect_source_kind(tmp_path) == "fer_folder"
    result = ingest(tmp_path, progress=False)
    check_consistent(result)
    assert result.source_kind == "fer_folder"
    assert result.read == len(expected) and not result.quarantine and not result.warnings
    got = {sid: (split, int(label)) for sid, split, label in zip(result.source_ids, result.splits, result.labels)}
    assert got == expected
    # Pixels come back as written (JPEG is lossy: compare with what cv2 decodes).
    index = list(result.source_ids).index("train/fear/Training_10.jpg")
    np.testing.assert_array_equal(result.images[index], cv2.imread(str(tmp_path / "train/fear/Training_10.jpg"), 0))
    assert all(len(h) == 32 and int(h, 16) >= 0 for h in result.byte_hashes)



def test_image_folder_with_split_folders(tmp_path: Path) -> None:
    for i, (folder, split) in enumerate((("train", "train"), ("valid", "val"), ("test", "test"))):
        for label, name in enumerate(CLASSES):
            write_png(tmp_path / folder / name.capitalize() / f"{label}.png", face(100 * i + label))
    assert detect_source_kind(tmp_path) == "image_folder"
    result = ingest(tmp_path, progress=False)
    check_consistent(result)
    assert result.source_kind == "image_folder" and result.read == 21
    for sid, split, label in zip(result.source_ids, result.splits, result.labels):
        folder, class_folder, _ = sid.split("/")
        assert split == {"train": "train", "valid": "val", "test": "test"}[folder]
        assert CLASSES[label] == class_folder.lower()



def test_missing_path_raises(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(IngestionError, match="nowhere.*does not exist"):
        ingest(missing)
    with pytest.raises(IngestionError, match="does not exist"):
        detect_source_kind(missing)



def test_unknown_class_folder_names_the_folder(tmp_path: Path) -> None:
    expected = make_fer_folder(tmp_path)
    for k in range(2):
        write_jpg(tmp_path / f"train/contempt/Training_c{k}.jpg", face(3000 + k))
    result = ingest(tmp_path, progress=False)
    check_consistent(result)
    assert len(result.labels) == len(expected) and result.read == len(expected) + 2
    for k in range(2):
        [reason] = reasons_for(result, f"train/contempt/Training_c{k}.jpg")
        assert reason.startswith("unknown_class:") and "'contempt'" in reason
    with pytest.raises(IngestionError, match=r"train/contempt/Training_c0\.jpg.*unknown_class.*contempt"):
        ingest(tmp_path, on_error="fail", progress=False)



def test_empty_class_folder_is_a_warning_in_both_modes(tmp_path: Path) -> None:
    make_class_tree(tmp_path, per_class=3)
    for path in (tmp_path / "disgust").iterdir():
        path.unlink()
    for on_error in ("quarantine", "fail"):
        result = ingest(tmp_path, on_error=on_error, progress=False)
        check_consistent(result)
        assert not result.quarantine
        assert any(w["item"] == "disgust" and w["reason"].startswith("empty_class_folder") for w in result.warnings)
        assert (result.labels == CLASSES.index("disgust")).sum() == 0



def test_image_folder_bad_files_keep_the_books_balanced(tmp_path: Path) -> None:
    make_class_tree(tmp_path, per_class=4)
    (tmp_path / "happy" / "empty.png").write_bytes(b"")
    (tmp_path / "README.txt").write_text("documentation at the root")
    (tmp_path / "stray.png").write_bytes(b"\x89PNG")  # could be a face: quarantined, not ignored
    (tmp_path / "sad" / "._0.png").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork
    result = ingest(tmp_path, progress=False)
    check_consistent(result)
    assert result.read == 7 * 4 + 3 and len(result.quarantine) == 3
    assert reasons_for(result, "stray.png")[0].startswith("not_in_class_folder")
    assert any(w["item"] == "README.txt" and w["reason"].startswith("ignored_root_file") for w in result.warnings)
    assert reasons_for(result, "happy/empty.png")[0].startswith("empty_file")
    assert reasons_for(result, "sad/._0.png")[0].startswith("not_an_image")

