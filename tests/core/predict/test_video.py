"""Tests for core.predict.video: frames -> faces -> per-frame CSV, face tracks, annotated video, broken
files; and the downscaled face detection (core.faces.detector) and threaded decode+detect
(core.predict.workers) they rely on."""

from __future__ import annotations

import csv
import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.faces.detector import FaceDetector, box_iou
from fer_pipeline.core.faces.recognizer import EmotionRecognizer
from fer_pipeline.core.predict.video import (
    IoUTracker,
    UnreadableVideoError,
    predict_video,
    video_csv_columns,
    video_table,
    write_video_csv,
)
from fer_pipeline.core.predict.workers import map_ordered
from fer_pipeline.demo import draw_photo
from tests.core.photo_files import CountingModel, assert_frontal_landmarks, csv_landmarks
from tests.core.video_clips import STILL_FACE, read_video, write_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.avi", frames=12)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def still_track(rows: list[dict]) -> set:
    """Track ids of the face boxes centred on the still face."""
    x, _, w, _ = STILL_FACE
    return {int(r["track_id"]) for r in rows if r.get("track_id") not in (None, "")
            and abs(float(r["x"]) + float(r["w"]) / 2 - (x + w / 2)) < 15}


def box_drawn(written: np.ndarray, source: np.ndarray, box: tuple[int, int, int, int]) -> bool:
    """Whether the annotated frame differs from the source along the box's left edge (a 1-px
    line at this size, blurred by the codec: the strongest of the columns around it)."""
    x, y, _, h = (int(v) for v in box)
    diffs = [np.abs(written[y + 10:y + h - 10, c].astype(int) - source[y + 10:y + h - 10, c].astype(int)).mean()
             for c in range(max(0, x - 2), x + 3)]
    return max(diffs) > 12  # about 23 on the edge, 3 elsewhere (codec noise)


# ---------------------------------------------------------------------------- detection


def test_downscaled_detection_maps_boxes_back_to_full_resolution() -> None:
    face = (900, 500, 300, 300)
    gray = draw_photo([(3, face)], size=(1600, 1200), rng=np.random.default_rng(1), color=False)
    small = FaceDetector(detect_max_side=320)
    assert small.detection_scale(gray.shape) == pytest.approx(0.2)
    boxes = small.detect(gray)
    assert len(boxes) == 1 and box_iou(boxes[0], face) > 0.5 and boxes[0][2] > 200  # full-resolution pixels
    full = FaceDetector(detect_max_side=None).detect(gray)
    assert len(full) == 1 and box_iou(full[0], boxes[0]) > 0.7
    assert FaceDetector(detect_max_side=320).detection_scale((240, 320)) == 1.0  # small images: untouched
    with pytest.raises(ValueError, match="detect_max_side"):
        FaceDetector(detect_max_side=-1)


def test_map_ordered_keeps_order_across_threads_and_raises() -> None:
    names = set()

    def slow(i: int) -> int:
        names.add(threading.current_thread().name)
        time.sleep(0.02 * (i % 3 == 0))  # every third item is slow: finishes after later ones
        return i * i

    assert list(map_ordered(slow, range(10), workers=3)) == [i * i for i in range(10)]
    assert any(name.startswith("fer-detect") for name in names)
    assert list(map_ordered(lambda i: -i, iter(range(4)), workers=1)) == [0, -1, -2, -3]

    def broken(i: int) -> int:
        if i == 2:
            raise RuntimeError("item 2")
        return i

    with pytest.raises(RuntimeError, match="item 2"):
        list(map_ordered(broken, range(6), workers=2))


# ---------------------------------------------------------------------------- tracking


def test_tracker_keeps_ids_for_overlapping_boxes_and_starts_new_ones() -> None:
    tracker = IoUTracker(min_iou=0.3, max_missed=1)
    assert tracker.update([(0, 0, 50, 50), (200, 0, 50, 50)]) == [0, 1]
    assert tracker.update([(205, 2, 50, 50), (5, 3, 50, 50)]) == [1, 0]  # order of boxes does not matter
    assert tracker.update([(400, 0, 50, 50)]) == [2]  # far from both: a new face; 0 and 1 missed once
    assert tracker.update([(8, 4, 50, 50)]) == [0]  # still within max_missed
    tracker.update([])
    tracker.update([])
    assert tracker.update([(8, 4, 50, 50)]) == [3]  # gone too long: a new id, never a reused one


# ---------------------------------------------------------------------------- videos


def test_video_rows_tracks_batches_and_annotated_video(clip: Path, model_and_config, tmp_path: Path) -> None:
    model, config = model_and_config
    counting = CountingModel(model)
    result = predict_video(clip, EmotionRecognizer(counting, config, device="cpu"),
                           annotated_path=tmp_path / "out.mp4", progress=False, batch_frames=8)
    assert (result.frames_read, result.frames_processed, result.error) == (12, 12, None)
    assert counting.batch_sizes == [16, 8]  # 8 frames x 2 faces, then the last 4 frames: one call each
    csv_path = write_video_csv(result, tmp_path / "out.csv")
    rows = read_rows(csv_path)
    assert list(rows[0]) == video_csv_columns(CLASSES)
    assert [sum(int(r["frame"]) == f for r in rows) for f in range(12)] == [2] * 12  # two faces per frame
    assert float(rows[-1]["time_s"]) == pytest.approx(11 / 10.0)  # 10 fps
    assert len({r["track_id"] for r in rows}) == 2 and len(still_track(rows)) == 1  # the moving face keeps its id
    moving = [r for r in rows if int(r["track_id"]) not in still_track(rows)]
    assert int(moving[-1]["x"]) > int(moving[0]["x"]) + 20  # ...while it moved
    assert all(sum(float(r[f"prob_{c}"]) for c in CLASSES) == pytest.approx(1.0, abs=1e-4) for r in rows)

    written = read_video(result.annotated)
    source = read_video(clip)
    assert len(written) == 12 and written[0].shape == (240, 320, 3)
    still = next((r["x"], r["y"], r["w"], r["h"]) for r in rows if int(r["frame"]) == 5 and still_track([r]))
    assert box_drawn(written[5], source[5], still) and not box_drawn(source[5], source[5], still)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left

    table = video_table([result])
    assert len(table) == 24 and str(table["track_id"].dtype) == "Int64" and table["time_s"].dtype == np.float64


def test_every_n_frames_processes_fewer_frames_and_carries_boxes(clip: Path, model_and_config,
                                                               tmp_path: Path) -> None:
    model, config = model_and_config
    result = predict_video(clip, EmotionRecognizer(model, config, device="cpu"),
                           annotated_path=tmp_path / "n3.avi", every_n_frames=3, progress=False)
    assert (result.frames_read, result.frames_processed) == (12, 4)
    assert sorted({r["frame"] for r in result.rows}) == [0, 3, 6, 9]
    written, source = read_video(result.annotated), read_video(clip)
    assert len(written) == 12
    for processed, skipped in ((0, 1), (0, 2), (9, 10), (9, 11)):  # boxes carried to the frames after
        still = next((r["x"], r["y"], r["w"], r["h"]) for r in result.rows if r["frame"] == processed
                     and still_track([r]))
        assert box_drawn(written[skipped], source[skipped], still)
    with pytest.raises(ValueError, match="every_n_frames"):
        predict_video(clip, EmotionRecognizer(model, config), every_n_frames=0, progress=False)


def test_frames_without_a_face_get_a_row_and_no_label(model_and_config, tmp_path: Path) -> None:
    model, config = model_and_config
    blank = tmp_path / "blank.mp4"
    writer = cv2.VideoWriter(str(blank), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (160, 120))
    for value in (40, 60, 80):
        writer.write(np.full((120, 160, 3), value, np.uint8))
    writer.release()
    counting = CountingModel(model)
    result = predict_video(blank, EmotionRecognizer(counting, config, device="cpu"),
                           annotated_path=tmp_path / "blank_out.mp4", progress=False)
    assert counting.batch_sizes == [] and result.num_faces == 0
    assert [(r["frame"], r.get("track_id")) for r in result.rows] == [(0, None), (1, None), (2, None)]
    rows = read_rows(write_video_csv(result, tmp_path / "blank.csv"))
    assert [r["frame"] for r in rows] == ["0", "1", "2"] and {r["emotion"] for r in rows} == {""}
    assert len(read_video(result.annotated)) == 3


def test_video_frames_are_searched_once_where_photos_get_a_second_search(model_and_config, tmp_path: Path) -> None:
    # A 60-px face in 1280x960 frames is found in a photo only by YuNet's second search, which a
    # video skips (a face-free frame would cost 10x more): the frames show no face.
    model, config = model_and_config
    frame = draw_photo([(3, (600, 400, 60, 60))], size=(1280, 960), rng=np.random.default_rng(0))
    path = tmp_path / "small_face.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (1280, 960))
    for _ in range(2):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    recognizer = EmotionRecognizer(model, config, device="cpu")
    assert len(recognizer.predict(frame)) == 1
    result = predict_video(path, recognizer, annotated_path=None, progress=False)
    assert result.frames_read == 2 and result.num_faces == 0
    assert recognizer.finder.detector.retry_max_side == 800  # the recognizer's own detector is unchanged


def test_truncated_video_keeps_the_frames_before_the_break(model_and_config, tmp_path: Path, caplog) -> None:
    model, config = model_and_config
    whole = write_clip(tmp_path / "whole.avi", frames=12)
    data = whole.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING):
        result = predict_video(cut, EmotionRecognizer(model, config, device="cpu"),
                               annotated_path=tmp_path / "cut_out.mp4", progress=False)
    assert 0 < result.frames_read < 12
    assert result.error and str(cut) in result.error and f"at frame {result.frames_read} of 12" in result.error
    assert str(cut) in caplog.text
    assert len(read_video(result.annotated)) == result.frames_read  # the frames before the break are kept
    rows = read_rows(write_video_csv(result, tmp_path / "cut.csv"))
    assert {int(r["frame"]) for r in rows} == set(range(result.frames_read))


@pytest.mark.parametrize("kind", ["junk", "empty", "mp4_without_index"])
def test_unreadable_video_is_a_clear_error(kind: str, model_and_config, tmp_path: Path) -> None:
    model, config = model_and_config
    path = tmp_path / f"{kind}.mp4"
    if kind == "junk":
        path.write_bytes(b"not a video at all " * 50)
    elif kind == "empty":
        path.write_bytes(b"")
    else:  # OpenCV's MP4 has its index (moov atom) at the end: cut in half it cannot be opened at all
        data = write_clip(tmp_path / "whole.mp4", frames=6).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    with pytest.raises(UnreadableVideoError, match=str(path).replace("\\", "\\\\")):
        predict_video(path, EmotionRecognizer(model, config, device="cpu"),
                      annotated_path=out / "annotated.mp4", progress=False)
    assert not out.exists() or list(out.iterdir()) == []  # nothing half-written


def test_the_video_csv_reports_yunets_score_and_landmarks_and_leaves_them_empty_for_haar(
        clip: Path, model_and_config, tmp_path: Path) -> None:
    from fer_pipeline.core.faces.crops import DETECTION_COLUMNS
    from fer_pipeline.core.faces.detector import make_detector

    model, config = model_and_config
    rows = {}
    for kind in ("yunet", "haar"):
        result = predict_video(clip, EmotionRecognizer(model, config, detector=make_detector(kind), device="cpu"),
                               progress=False)
        rows[kind] = read_rows(write_video_csv(result, tmp_path / f"{kind}.csv"))
        assert list(rows[kind][0]) == video_csv_columns(CLASSES)
        assert video_csv_columns(CLASSES)[-len(DETECTION_COLUMNS) - 1] == f"prob_{CLASSES[-1]}"  # added at the end
        table = video_table([result])
        assert all(table[column].dtype == np.float64 for column in DETECTION_COLUMNS)
    faces = [row for row in rows["yunet"] if row["track_id"] != ""]
    assert len(faces) >= 12  # the still face on every frame, at least
    for row in faces:
        assert 0.7 <= float(row["score"]) <= 1.0
        assert_frontal_landmarks([row[k] for k in ("x", "y", "w", "h")], csv_landmarks(row))
    assert [row for row in rows["haar"] if row["track_id"] != ""]
    assert all(row[column] == "" for row in rows["haar"] for column in DETECTION_COLUMNS)
