"""Tests for core.predict.photos: photos -> faces -> emotions, the CSV, the table and the annotated images."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.faces.images import load_image
from fer_pipeline.core.faces.recognizer import EmotionRecognizer
from fer_pipeline.core.ingestion.decode import FORMAT_EXTENSIONS, imdecode_formats
from fer_pipeline.core.predict.inputs import image_extensions
from fer_pipeline.core.predict.photos import collect_image_files, predict_photos, write_outputs
from tests.core.photo_files import (
    PHOTO_SEEDS,
    TIFF_FOLDER_IMAGES,
    CountingModel,
    assert_frontal_landmarks,
    csv_landmarks,
    write_image,
    write_photo_folder,
    write_tiff_folder,
)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photo_folder(tmp_path_factory.mktemp("photos"))


def test_collect_image_files(photo_folder: Path, tmp_path: Path) -> None:
    files = collect_image_files([photo_folder])
    names = [f.name for f in files]
    assert names == sorted(names) and "readme.txt" not in names and len(names) == 6
    explicit = collect_image_files([photo_folder / "readme.txt", photo_folder / "readme.txt"])
    assert [f.name for f in explicit] == ["readme.txt"]  # named files are tried, duplicates dropped
    with pytest.raises(FileNotFoundError):
        collect_image_files([tmp_path / "missing"])


def test_a_folder_of_tiff_photos_is_searched_with_its_subfolders(tmp_path: Path, caplog) -> None:
    folder = write_tiff_folder(tmp_path / "jaffe")
    with caplog.at_level(logging.WARNING, logger="fer_pipeline.core.predict.photos"):
        files = collect_image_files([folder])
    assert [f.relative_to(folder).as_posix() for f in files] == TIFF_FOLDER_IMAGES  # .tiff, .TIF, subfolders
    assert [r.getMessage() for r in caplog.records] == [
        f"skipped 1 file that is not an image or a video: {folder / 'README.txt'}"]  # hidden files: no word


def test_every_format_the_decoder_reads_is_found_by_its_extension(tmp_path: Path) -> None:
    assert {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"} <= set(image_extensions())
    image = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    written = []
    for fmt in imdecode_formats():
        ok, encoded = cv2.imencode(FORMAT_EXTENSIONS[fmt][0], image[..., 0] if fmt == "pnm" else image)  # PBM: grey
        assert ok
        encoded = encoded.tobytes()
        for ext in FORMAT_EXTENSIONS[fmt]:
            for name in (f"{fmt}_lower{ext}", f"{fmt}_upper{ext.upper()}"):
                (tmp_path / name).write_bytes(encoded)
                written.append(name)
    files = collect_image_files([tmp_path])
    assert sorted(f.name for f in files) == sorted(written)
    assert all(load_image(f).shape == (24, 32, 3) for f in files)  # each one the photo path reads


def test_same_named_photos_in_subfolders_keep_distinct_outputs(tmp_path: Path, model_and_config) -> None:
    model, config = model_and_config
    folder = write_tiff_folder(tmp_path / "jaffe")
    result = predict_photos([folder], EmotionRecognizer(model, config, device="cpu"), progress=False)
    assert result.files == [str(folder / name) for name in TIFF_FOLDER_IMAGES] and not result.unreadable
    assert {row["file"] for row in result.rows} == {str(folder / n) for n in TIFF_FOLDER_IMAGES[:3]}  # faces found
    assert result.no_face == [str(folder / "b" / "face.tiff")]
    assert list(result.annotated) == ["KA.AN1.39", "KA.AN1.40", "face", "face_2"]  # a/face, then b/face

    paths = write_outputs(result, tmp_path / "out")
    assert sorted(p.name for p in paths["annotated"]) == ["KA.AN1.39.png", "KA.AN1.40.png", "face.png", "face_2.png"]
    a_face, b_face = (load_image(paths["annotated_dir"] / name) for name in ("face.png", "face_2.png"))
    assert a_face.shape == (360, 480, 3) and b_face.shape == (240, 320, 3)  # neither overwrote the other
    with open(paths["csv"], newline="", encoding="utf-8") as handle:
        statuses = {(row["file"], row["status"]) for row in csv.DictReader(handle)}
    assert statuses == {*((str(folder / n), "face") for n in TIFF_FOLDER_IMAGES[:3]),
                        (str(folder / "b" / "face.tiff"), "no_face")}  # each row names its file and subfolder


def test_predict_photos_end_to_end(photo_folder: Path, model_and_config, tmp_path: Path) -> None:
    model, config = model_and_config
    counting = CountingModel(model)
    result = predict_photos([photo_folder], EmotionRecognizer(counting, config, device="cpu"), progress=False)

    assert counting.calls == 1  # one batched call for every face of every photo
    assert counting.batch_sizes[0] == len(result.rows) >= 3
    assert {row["file"] for row in result.rows} <= {str(photo_folder / f"group_{s}.jpg") for s in PHOTO_SEEDS}
    for row in result.rows:
        probs = np.array([row[f"prob_{c}"] for c in CLASSES])
        assert probs.sum() == pytest.approx(1.0, abs=1e-5)
        assert row["emotion"] == CLASSES[int(probs.argmax())]
        assert row["confidence"] == pytest.approx(probs.max())
        assert row["w"] > 50 and row["h"] > 50
    assert result.no_face == [str(photo_folder / "blank.png")]
    assert sorted(Path(item["file"]).name for item in result.unreadable) == ["empty.jpg", "notes.jpg", "truncated.jpg"]
    assert all(item["reason"] for item in result.unreadable)
    assert set(result.annotated) == {"blank", "group_1", "group_2"}
    assert result.annotated["group_1"].shape == (360, 480, 3)

    paths = write_outputs(result, tmp_path / "out")
    with open(paths["csv"], newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(result.rows) + 1 + 3  # faces + no-face + unreadable: nothing vanishes
    statuses = [row["status"] for row in rows]
    assert statuses.count("face") == len(result.rows)
    assert statuses.count("no_face") == 1 and statuses.count("unreadable") == 3
    assert [row["file"] for row in rows] == sorted(row["file"] for row in rows)  # input order = sorted names
    face_row = next(row for row in rows if row["status"] == "face")
    assert sum(float(face_row[f"prob_{c}"]) for c in CLASSES) == pytest.approx(1.0, abs=1e-4)
    assert face_row["emotion"] in CLASSES
    unreadable_row = next(row for row in rows if row["status"] == "unreadable")
    assert unreadable_row["reason"] and unreadable_row["emotion"] == ""
    assert sorted(p.name for p in paths["annotated"]) == ["blank.png", "group_1.png", "group_2.png"]
    annotated = load_image(paths["annotated_dir"] / "group_1.png")
    original = load_image(photo_folder / "group_1.jpg")
    assert annotated.shape == original.shape and not np.array_equal(annotated, original)  # boxes drawn


def test_predict_photos_without_faces_skips_the_model(tmp_path: Path, model_and_config) -> None:
    model, config = model_and_config
    counting = CountingModel(model)
    blank = write_image(tmp_path / "blank.jpg", np.full((200, 200, 3), 30, np.uint8))
    result = predict_photos([blank], EmotionRecognizer(counting, config, device="cpu"), progress=False)
    assert counting.calls == 0 and result.rows == [] and result.no_face == [str(blank)]
    paths = write_outputs(result, tmp_path / "out")
    rows = list(csv.DictReader(open(paths["csv"], newline="", encoding="utf-8")))
    assert [(r["status"], r["emotion"]) for r in rows] == [("no_face", "")]


def test_annotated_names_are_unique_and_previews_are_bounded(tmp_path: Path, model_and_config) -> None:
    model, config = model_and_config
    big = np.full((1500, 2000, 3), 100, np.uint8)
    (tmp_path / "a").mkdir()
    a = write_image(tmp_path / "a" / "photo.jpg", big)
    b = write_image(tmp_path / "photo.png", np.full((50, 50, 3), 100, np.uint8))
    result = predict_photos([a, b], EmotionRecognizer(model, config, device="cpu"), progress=False)
    assert set(result.annotated) == {"photo", "photo_2"}
    assert max(result.annotated["photo"].shape[:2]) == 1280


def test_small_face_crops_are_classified_whole(tmp_path: Path, model_and_config) -> None:
    from fer_pipeline.demo import draw_face

    model, config = model_and_config
    face = write_image(tmp_path / "face48.png", draw_face(3, np.random.default_rng(0)))
    big_blank = write_image(tmp_path / "blank.png", np.full((200, 200), 128, np.uint8))
    result = predict_photos([face, big_blank], EmotionRecognizer(model, config, device="cpu"), progress=False)
    assert [(r["file"], r["box_source"], r["w"], r["h"]) for r in result.rows] == [(str(face), "whole_image", 48, 48)]
    assert result.no_face == [str(big_blank)]
    assert result.annotated["face48"].shape == (192, 192, 3)  # enlarged so the label is legible
    # Off, the crop goes to the detector: Haar misses its face, YuNet (the default) re-crops it.
    off = predict_photos([face], EmotionRecognizer(model, config, detector="haar", device="cpu",
                                                   whole_image_max_side=0), progress=False)
    assert off.rows == [] and off.no_face == [str(face)]
    off = predict_photos([face], EmotionRecognizer(model, config, device="cpu", whole_image_max_side=0), progress=False)
    assert [r["box_source"] for r in off.rows] == ["detector"] and (off.rows[0]["w"], off.rows[0]["h"]) != (48, 48)


def test_result_table_matches_the_csv(photo_folder: Path, model_and_config, tmp_path: Path) -> None:
    from fer_pipeline.core.predict.photos import csv_columns, result_table

    model, config = model_and_config
    result = predict_photos([photo_folder], EmotionRecognizer(model, config, device="cpu"), progress=False)
    table = result_table(result)
    assert list(table.columns) == csv_columns(CLASSES)
    assert len(table) == len(result.rows) + len(result.no_face) + len(result.unreadable)
    faces = table[table["status"] == "face"]
    assert str(faces["x"].dtype) == "Int64" and faces["confidence"].dtype == np.float64
    np.testing.assert_allclose(faces[[f"prob_{c}" for c in CLASSES]].sum(axis=1), 1.0, atol=1e-5)
    assert table.loc[table["status"] != "face", "confidence"].isna().all()
    assert table.loc[table["status"] == "unreadable", "reason"].str.len().gt(0).all()
    empty = result_table(predict_photos([], EmotionRecognizer(model, config), progress=False))
    assert empty.empty and list(empty.columns) == csv_columns(CLASSES)


def test_threaded_decode_and_detect_match_the_serial_run(photo_folder: Path, model_and_config) -> None:
    model, config = model_and_config
    counting = CountingModel(model)
    serial = predict_photos([photo_folder], EmotionRecognizer(model, config, device="cpu"), progress=False, workers=1)
    threaded = predict_photos([photo_folder], EmotionRecognizer(counting, config, device="cpu"),
                              progress=False, workers=3)
    assert counting.calls == 1  # threads find the faces; still one batched model call
    key = ("file", "face_index", "x", "y", "w", "h", "emotion")
    assert [tuple(r[k] for k in key) for r in threaded.rows] == [tuple(r[k] for k in key) for r in serial.rows]
    assert threaded.unreadable == serial.unreadable and list(threaded.annotated) == list(serial.annotated)


def test_the_csv_reports_yunets_score_and_landmarks_and_leaves_them_empty_for_haar(
        photo_folder: Path, model_and_config, tmp_path: Path) -> None:
    from fer_pipeline.core.faces.crops import DETECTION_COLUMNS
    from fer_pipeline.core.faces.detector import make_detector
    from fer_pipeline.core.predict.photos import csv_columns, result_table

    model, config = model_and_config
    photos = [photo_folder / f"group_{seed}.jpg" for seed in PHOTO_SEEDS] + [photo_folder / "blank.png"]
    csv_rows = {}
    for kind in ("yunet", "haar"):
        result = predict_photos(photos, EmotionRecognizer(model, config, detector=make_detector(kind), device="cpu"),
                                progress=False)
        paths = write_outputs(result, tmp_path / kind)
        with open(paths["csv"], newline="", encoding="utf-8") as handle:
            csv_rows[kind] = list(csv.DictReader(handle))
        assert list(csv_rows[kind][0]) == csv_columns(CLASSES)
        assert csv_columns(CLASSES)[:-len(DETECTION_COLUMNS)][-1] == "reason"  # the new columns come last
        table = result_table(result)
        assert all(table[column].dtype == np.float64 for column in DETECTION_COLUMNS)
    faces = [row for row in csv_rows["yunet"] if row["status"] == "face"]
    assert len(faces) == 2 * len(PHOTO_SEEDS)
    for row in faces:
        assert 0.7 <= float(row["score"]) <= 1.0
        assert_frontal_landmarks([row[k] for k in ("x", "y", "w", "h")], csv_landmarks(row))
    no_face = next(row for row in csv_rows["yunet"] if row["status"] == "no_face")
    assert all(no_face[column] == "" for column in DETECTION_COLUMNS)
    assert sum(row["status"] == "face" for row in csv_rows["haar"]) >= 3  # Haar misses one of them
    assert all(row[column] == "" for row in csv_rows["haar"] for column in DETECTION_COLUMNS)
