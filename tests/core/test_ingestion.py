"""Ingestion: the three source kinds, every kind of bad input in both error modes, duplicates."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from fer_pipeline.core.classes import CLASSES, CSV_CLASSES, SPLITS
from fer_pipeline.core.ingestion import (
    IngestionError,
    IngestionResult,
    apply_duplicate_policy,
    detect_source_kind,
    find_duplicates,
    ingest,
    leaked_mask,
    quality_report,
)



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


# ----------------------------------------------------------------------------- source kinds


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


def test_results_do_not_depend_on_worker_count(tmp_path: Path) -> None:
    make_fer_folder(tmp_path)
    one = ingest(tmp_path, workers=1, progress=False)
    three = ingest(tmp_path, workers=3, progress=True)
    np.testing.assert_array_equal(one.images, three.images)
    np.testing.assert_array_equal(one.source_ids, three.source_ids)
    np.testing.assert_array_equal(one.byte_hashes, three.byte_hashes)


def write_csv(path: Path, rows: list[tuple], header: str = "emotion,pixels,Usage") -> Path:
    lines = [header] + [",".join(str(cell) for cell in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def pixel_string(pixels: np.ndarray) -> str:
    return " ".join(map(str, pixels.ravel().tolist()))


def test_csv_remaps_labels_and_usage(tmp_path: Path) -> None:
    rows = [(csv_label, pixel_string(face(csv_label)), usage)
            for csv_label, usage in zip(range(7), ["Training", "Training", "PublicTest", "PrivateTest",
                                                   "Training", "PublicTest", "PrivateTest"])]
    csv_path = write_csv(tmp_path / "fer2013.csv", rows)
    for path in (tmp_path, csv_path):  # the folder or the file itself
        assert detect_source_kind(path) == "csv"
        result = ingest(path, progress=False)
        check_consistent(result)
        assert result.source_kind == "csv"
        assert result.source_ids.tolist() == [f"fer2013.csv:row{k}" for k in range(1, 8)]
        # CSV 4 = sad -> canonical 5; CSV 6 = neutral -> canonical 4.
        assert result.labels[4] == CLASSES.index("sad") == 5
        assert result.labels[6] == CLASSES.index("neutral") == 4
        assert [CLASSES[v] for v in result.labels] == list(CSV_CLASSES)
        assert result.splits.tolist() == ["train", "train", "val", "test", "train", "val", "test"]
        np.testing.assert_array_equal(result.images[3], face(3))
        assert all(len(h) == 32 for h in result.byte_hashes)


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


def make_class_tree(root: Path, per_class: int = 20) -> None:
    for label, name in enumerate(CLASSES):
        for k in range(per_class):
            write_png(root / name / f"{k:03d}.png", face(1000 * label + k))


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


def test_missing_path_raises(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(IngestionError, match="nowhere.*does not exist"):
        ingest(missing)
    with pytest.raises(IngestionError, match="does not exist"):
        detect_source_kind(missing)


# ----------------------------------------------------------------------------- bad files


def _zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def _truncated_jpeg(path: Path) -> None:
    ok, data = cv2.imencode(".jpg", face(77))
    path.write_bytes(data.tobytes()[: len(data) // 2])


def _truncated_png(path: Path) -> None:
    ok, data = cv2.imencode(".png", face(78))
    path.write_bytes(data.tobytes()[: len(data) // 2])


def _text(path: Path) -> None:
    path.write_text("not a face\n")


def _ds_store(path: Path) -> None:
    path.write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(range(256)) * 4)


def _colour(path: Path) -> None:
    cv2.imwrite(str(path), np.random.default_rng(5).integers(0, 256, (48, 48, 3), dtype=np.uint8))


def _odd_size(path: Path) -> None:
    cv2.imwrite(str(path), np.random.default_rng(6).integers(0, 256, (64, 80), dtype=np.uint8))


# (file name inside train/angry/, writer, reason category, option that makes it bad)
BAD_FILES = [
    ("Training_zero.jpg", _zero_bytes, "empty_file", {}),
    ("Training_trunc.jpg", _truncated_jpeg, "truncated_image", {}),
    ("Training_trunc.png", _truncated_png, "truncated_image", {}),
    ("Training_notes.txt", _text, "not_an_image", {}),
    (".DS_Store", _ds_store, "not_an_image", {}),
    ("Training_colour.png", _colour, "colour_image", {"colour": "reject"}),
    ("Training_big.png", _odd_size, "wrong_size", {"size": "reject"}),
]


@pytest.mark.parametrize("name, writer, category, options", BAD_FILES, ids=[b[2] + ":" + b[0] for b in BAD_FILES])
def test_bad_file_is_quarantined_or_fails(tmp_path: Path, name, writer, category, options) -> None:
    expected = make_fer_folder(tmp_path)
    writer(tmp_path / "train" / "angry" / name)
    item = f"train/angry/{name}"

    result = ingest(tmp_path, progress=False, **options)
    check_consistent(result)
    assert result.read == len(expected) + 1
    assert len(result.labels) == len(expected)
    [reason] = reasons_for(result, item)
    assert reason.startswith(category + ":")

    with pytest.raises(IngestionError) as raised:
        ingest(tmp_path, on_error="fail", progress=False, **options)
    assert item in str(raised.value) and category in str(raised.value)


def test_colour_and_size_are_converted_by_default(tmp_path: Path) -> None:
    make_fer_folder(tmp_path)
    _colour(tmp_path / "train/angry/Training_colour.png")
    _odd_size(tmp_path / "train/angry/Training_big.png")
    result = ingest(tmp_path, progress=False)
    check_consistent(result)
    assert not result.quarantine
    ids = result.source_ids.tolist()
    colour = cv2.imread(str(tmp_path / "train/angry/Training_colour.png"), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(result.images[ids.index("train/angry/Training_colour.png")],
                                  cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY))
    big = cv2.imread(str(tmp_path / "train/angry/Training_big.png"), 0)
    np.testing.assert_array_equal(result.images[ids.index("train/angry/Training_big.png")],
                                  cv2.resize(big, (48, 48), interpolation=cv2.INTER_AREA))


def test_grey_stored_as_rgb_is_not_colour(tmp_path: Path) -> None:
    make_fer_folder(tmp_path)
    grey = face(4242)
    write_png(tmp_path / "train/angry/Training_rgb.png", cv2.merge([grey, grey, grey]))
    result = ingest(tmp_path, colour="reject", progress=False)
    assert not result.quarantine
    np.testing.assert_array_equal(result.images[result.source_ids.tolist().index("train/angry/Training_rgb.png")], grey)


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


# ----------------------------------------------------------------------------- bad CSV rows

GOOD = pixel_string(face(1))
BAD_ROWS = [
    ((3, " ".join(GOOD.split()[:-1]), "Training"), "csv_bad_pixel_count"),
    ((3, GOOD.replace(" ", " x ", 1), "Training"), "csv_non_numeric_pixels"),
    ((3, "300 " + " ".join(GOOD.split()[1:]), "Training"), "csv_pixel_out_of_range"),
    ((7, GOOD, "Training"), "csv_label_out_of_range"),
    ((-1, GOOD, "Training"), "csv_label_out_of_range"),
    (("happy", GOOD, "Training"), "csv_bad_label"),
    ((3, GOOD, "Validation"), "csv_unknown_usage"),
]


@pytest.mark.parametrize("row, category", BAD_ROWS, ids=[b[1] + str(i) for i, b in enumerate(BAD_ROWS)])
def test_bad_csv_row_is_quarantined_or_fails(tmp_path: Path, row, category) -> None:
    rows = [(0, GOOD, "Training"), row, (6, pixel_string(face(2)), "PrivateTest")]
    write_csv(tmp_path / "fer2013.csv", rows)
    result = ingest(tmp_path, progress=False)
    check_consistent(result)
    assert result.read == 3 and len(result.labels) == 2
    assert result.source_ids.tolist() == ["fer2013.csv:row1", "fer2013.csv:row3"]
    [reason] = reasons_for(result, "fer2013.csv:row2")
    assert reason.startswith(category + ":")
    with pytest.raises(IngestionError, match=rf"fer2013\.csv:row2: {category}"):
        ingest(tmp_path, on_error="fail", progress=False)


def test_csv_short_row_is_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "fer2013.csv"
    path.write_text(f"emotion,pixels,Usage\n0,{GOOD},Training\n3\n")
    result = ingest(path, progress=False)
    assert result.read == 2 and reasons_for(result, "fer2013.csv:row2")[0].startswith("csv_malformed_row")


@pytest.mark.parametrize("on_error", ["quarantine", "fail"])
def test_csv_missing_column_is_a_file_error(tmp_path: Path, on_error: str) -> None:
    write_csv(tmp_path / "fer2013.csv", [(0, GOOD)], header="emotion,pixels")
    with pytest.raises(IngestionError, match=r"fer2013\.csv: missing column\(s\) usage"):
        ingest(tmp_path, on_error=on_error, progress=False)


# ----------------------------------------------------------------------------- duplicates


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


def test_without_opencv_pillow_decodes_the_same_faces(tmp_path: Path, monkeypatch) -> None:
    """The GPU box may lack OpenCV: ingestion then decodes, converts and resizes with Pillow."""
    import fer_pipeline.core.ingestion as ingestion_module

    make_class_tree(tmp_path, per_class=3)
    yy, xx = np.mgrid[0:60, 0:52]
    rgb = np.stack([4 * yy, 4 * xx, 255 - 2 * (xx + yy)], axis=-1).clip(0, 255).astype(np.uint8)  # colour, odd-sized
    Image.fromarray(rgb).save(tmp_path / "happy" / "colour.png")
    with_cv2 = ingest(tmp_path, progress=False, seed=0)
    monkeypatch.setattr(ingestion_module, "_opencv", lambda: None)
    with_pil = ingest(tmp_path, progress=False, seed=0)
    assert list(with_pil.source_ids) == list(with_cv2.source_ids)
    colour = list(with_cv2.source_ids).index("happy/colour.png")
    others = np.arange(len(with_cv2.labels)) != colour
    np.testing.assert_array_equal(with_pil.images[others], with_cv2.images[others])
    # grey conversion uses OpenCV's weights; area resize is Pillow's box filter: within a few levels
    diff = np.abs(with_pil.images[colour].astype(int) - with_cv2.images[colour].astype(int))
    assert diff.mean() < 2.0 and diff.max() <= 16
