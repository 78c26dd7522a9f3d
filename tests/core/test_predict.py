"""Tests for core.predict: image loading, face detection and cropping, photos -> CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.faces.library import (
    FaceDetector,
    UnreadableImageError,
    collect_image_files,
    crop_faces,
    load_image,
    predict_photos,
    write_outputs,
)
from fer_pipeline.demo import draw_photo

# Two drawn faces per photo; both are found by the Haar cascade for these seeds.
PHOTO_FACES = [(3, (60, 90, 130, 150)), (5, (290, 80, 120, 140))]
PHOTO_SEEDS = (1, 2)


def write_image(path: Path, image: np.ndarray, rgb: bool = True) -> Path:
    if rgb and image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(path.suffix, image)
    assert ok
    encoded.tofile(path)
    return path


class CountingModel(nn.Module):
    """Wraps a model and counts forward calls (predict_photos must batch all faces at once)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.batch_sizes.append(int(x.shape[0]))
        return self.inner(x)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for seed in PHOTO_SEEDS:
        write_image(folder / f"group_{seed}.jpg", draw_photo(PHOTO_FACES, rng=np.random.default_rng(seed)))
    write_image(folder / "blank.png", np.full((240, 320, 3), 128, dtype=np.uint8))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is not an image\n")
    photo = draw_photo(PHOTO_FACES, rng=np.random.default_rng(1))
    jpeg = cv2.imencode(".jpg", photo)[1].tobytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "readme.txt").write_text("ignored: not an image extension\n")
    return folder


# ---------------------------------------------------------------------------- load_image


def test_load_image_colour_gray_rgba_16bit(tmp_path: Path) -> None:
    rgb = np.zeros((10, 12, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # red
    loaded = load_image(write_image(tmp_path / "colour.png", rgb))
    assert loaded.shape == (10, 12, 3) and loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded[0, 0], [200, 0, 0])

    gray = np.arange(120, dtype=np.uint8).reshape(10, 12)
    loaded = load_image(write_image(tmp_path / "gray.png", gray))
    assert loaded.shape == (10, 12, 3)
    np.testing.assert_array_equal(loaded[..., 1], gray)

    rgba = np.zeros((10, 12, 4), dtype=np.uint8)  # BGRA for OpenCV
    rgba[:, :6] = (0, 0, 255, 255)  # opaque red on the left
    loaded = load_image(write_image(tmp_path / "rgba.png", rgba, rgb=False))
    np.testing.assert_array_equal(loaded[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(loaded[0, 11], [255, 255, 255])  # transparent -> white

    deep = np.full((8, 8), 40000, dtype=np.uint16)
    loaded = load_image(write_image(tmp_path / "deep.png", deep))
    assert loaded.dtype == np.uint8
    assert abs(int(loaded[0, 0, 0]) - 40000 // 257) <= 1

    jpeg = load_image(write_image(tmp_path / "ünïcode photo.jpg", np.full((16, 16, 3), 90, np.uint8)))
    assert jpeg.shape == (16, 16, 3) and abs(int(jpeg.mean()) - 90) <= 2


@pytest.mark.parametrize("name", ["empty.jpg", "notes.jpg", "truncated.jpg"])
def test_load_image_rejects_bad_files(photo_folder: Path, name: str) -> None:
    with pytest.raises(UnreadableImageError):
        load_image(photo_folder / name)


def test_load_image_rejects_truncated_png(tmp_path: Path) -> None:
    png = cv2.imencode(".png", np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))[1].tobytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    with pytest.raises(UnreadableImageError):
        load_image(tmp_path / "cut.png")


# ---------------------------------------------------------------------------- faces


def test_detector_finds_drawn_faces_and_nothing_on_blank() -> None:
    detector = FaceDetector()
    found = 0
    for seed in PHOTO_SEEDS:
        photo = draw_photo(PHOTO_FACES, rng=np.random.default_rng(seed))
        boxes = detector.detect(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY))
        for _, (x, y, w, h) in PHOTO_FACES:
            found += any(bx <= x + w / 2 <= bx + bw and by <= y + h / 2 <= by + bh for bx, by, bw, bh in boxes)
        assert boxes == sorted(boxes)
    assert found >= 3  # of 4 drawn faces
    assert detector.detect(np.full((240, 320), 128, dtype=np.uint8)) == []


def test_crop_faces_margin_and_borders() -> None:
    gray = np.zeros((100, 120), dtype=np.uint8)
    gray[30:70, 40:80] = 200  # a 40x40 "face"
    tight = crop_faces(gray, [(40, 30, 40, 40)], margin=0.0, size=48)
    assert tight.shape == (1, 48, 48) and tight.dtype == np.uint8
    assert np.all(tight == 200)
    loose = crop_faces(gray, [(40, 30, 40, 40)], margin=0.25)
    assert loose[0, 0, 0] == 0 and loose[0, 24, 24] == 200  # margin shows background

    corner = np.zeros((100, 120), dtype=np.uint8)
    corner[:40, :40] = 200  # face in the top-left corner: the margin runs off the image
    crops = crop_faces(corner, [(0, 0, 40, 40), (70, 50, 40, 40)], margin=0.25)
    assert crops.shape == (2, 48, 48)
    assert crops[0, 0, 0] == 200  # replicated edge, not black padding
    assert crops[0, -1, -1] == 0


# ---------------------------------------------------------------------------- photos -> predictions


def test_collect_image_files(photo_folder: Path, tmp_path: Path) -> None:
    files = collect_image_files([photo_folder])
    names = [f.name for f in files]
    assert names == sorted(names) and "readme.txt" not in names and len(names) == 6
    explicit = collect_image_files([photo_folder / "readme.txt", photo_folder / "readme.txt"])
    assert [f.name for f in explicit] == ["readme.txt"]  # named files are tried, duplicates dropped
    with pytest.raises(FileNotFoundError):
        collect_image_files([tmp_path / "missing"])


def test_predict_photos_end_to_end(photo_folder: Path, model_and_config, tmp_path: Path) -> None:
    model, config = model_and_config
    counting = CountingModel(model)
    result = predict_photos([photo_folder], counting, config, progress=False, device="cpu")

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
    result = predict_photos([blank], counting, config, progress=False, device="cpu")
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
    result = predict_photos([a, b], model, config, progress=False, device="cpu")
    assert set(result.annotated) == {"photo", "photo_2"}
    assert max(result.annotated["photo"].shape[:2]) == 1280


def test_small_face_crops_are_classified_whole(tmp_path: Path, model_and_config) -> None:
    from fer_pipeline.demo import draw_face

    model, config = model_and_config
    face = write_image(tmp_path / "face48.png", draw_face(3, np.random.default_rng(0)))
    big_blank = write_image(tmp_path / "blank.png", np.full((200, 200), 128, np.uint8))
    result = predict_photos([face, big_blank], model, config, progress=False, device="cpu")
    assert [(r["file"], r["box_source"], r["w"], r["h"]) for r in result.rows] == [(str(face), "whole_image", 48, 48)]
    assert result.no_face == [str(big_blank)]
    assert result.annotated["face48"].shape == (192, 192, 3)  # enlarged so the label is legible
    off = predict_photos([face], model, config, progress=False, device="cpu", whole_image_max_side=0)
    assert off.rows == [] and off.no_face == [str(face)]


def test_result_table_matches_the_csv(photo_folder: Path, model_and_config, tmp_path: Path) -> None:
    from fer_pipeline.core.faces.library import csv_columns, result_table

    model, config = model_and_config
    result = predict_photos([photo_folder], model, config, progress=False, device="cpu")
    table = result_table(result)
    assert list(table.columns) == csv_columns(CLASSES)
    assert len(table) == len(result.rows) + len(result.no_face) + len(result.unreadable)
    faces = table[table["status"] == "face"]
    assert str(faces["x"].dtype) == "Int64" and faces["confidence"].dtype == np.float64
    np.testing.assert_allclose(faces[[f"prob_{c}" for c in CLASSES]].sum(axis=1), 1.0, atol=1e-5)
    assert table.loc[table["status"] != "face", "confidence"].isna().all()
    assert table.loc[table["status"] == "unreadable", "reason"].str.len().gt(0).all()
    empty = result_table(predict_photos([], model, config, progress=False))
    assert empty.empty and list(empty.columns) == csv_columns(CLASSES)


def test_decode_image_refuses_more_pixels_than_allowed_from_the_header(tmp_path: Path, monkeypatch) -> None:
    from fer_pipeline.core.faces.library import ImageTooLargeError, decode_image, image_size

    raw = cv2.imencode(".png", np.zeros((30, 40), np.uint8))[1].tobytes()
    assert image_size(raw) == (40, 30) and image_size(b"not an image") is None
    assert decode_image(raw, max_pixels=1200).shape == (30, 40, 3)  # at the limit: decoded
    np.testing.assert_array_equal(decode_image(raw), load_image(write_image(tmp_path / "a.png", np.zeros((30, 40),
                                                                                                       np.uint8))))
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: pytest.fail("decoded an image over the limit"))
    with pytest.raises(ImageTooLargeError, match=r"40x30 = 1,200 pixels is over the limit of 1,199"):
        decode_image(raw, max_pixels=1199)
    assert issubclass(ImageTooLargeError, UnreadableImageError)  # who catches unreadable images catches it too


def test_threaded_decode_and_detect_match_the_serial_run(photo_folder: Path, model_and_config) -> None:
    model, config = model_and_config
    counting = CountingModel(model)
    serial = predict_photos([photo_folder], model, config, progress=False, device="cpu", workers=1)
    threaded = predict_photos([photo_folder], counting, config, progress=False, device="cpu", workers=3)
    assert counting.calls == 1  # threads find the faces; still one batched model call
    key = ("file", "face_index", "x", "y", "w", "h", "emotion")
    assert [tuple(r[k] for k in key) for r in threaded.rows] == [tuple(r[k] for k in key) for r in serial.rows]
    assert threaded.unreadable == serial.unreadable and list(threaded.annotated) == list(serial.annotated)


def test_explicit_min_size_is_in_full_resolution_pixels() -> None:
    gray = draw_photo(PHOTO_FACES, size=(960, 720), rng=np.random.default_rng(1), color=False)
    # Faces of 130-150 px, searched at half size: a 110-px minimum must become 55 px there to keep them.
    assert FaceDetector(detect_max_side=480, min_size=(110, 110)).detect(gray)
    assert FaceDetector(detect_max_side=480, min_size=(200, 200)).detect(gray) == []  # 100 px at that scale
    assert FaceDetector(detect_max_side=480, min_size=(10, 10))._min_size_for(gray[::2, ::2], 0.5) == (24, 24)
