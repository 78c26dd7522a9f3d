"""Tests for core.faces.crops: square face crops with a margin, edges replicated at the border."""

from __future__ import annotations

import numpy as np

from fer_pipeline.core.faces.crops import crop_faces


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


def test_found_faces_carry_yunets_score_and_landmarks_and_none_for_haar() -> None:
    from fer_pipeline.core.faces.crops import DETECTION_COLUMNS, find_faces, landmark_points
    from fer_pipeline.core.faces.detector import LANDMARKS, make_detector
    from fer_pipeline.demo import draw_photo
    from tests.core.photo_files import PHOTO_FACES, assert_frontal_landmarks

    photo = draw_photo(PHOTO_FACES, rng=np.random.default_rng(1))
    assert DETECTION_COLUMNS == ("score", *[f"{name}_{axis}" for name in LANDMARKS for axis in "xy"])
    rows = find_faces(photo, make_detector("yunet")).rows(file="group.jpg")
    assert len(rows) == len(PHOTO_FACES)
    for row in rows:
        assert list(row)[-len(DETECTION_COLUMNS):] == list(DETECTION_COLUMNS)
        assert 0.7 <= row["score"] <= 1.0
        assert_frontal_landmarks((row["x"], row["y"], row["w"], row["h"]), landmark_points(row))
    haar = find_faces(photo, make_detector("haar")).rows(file="group.jpg")
    assert len(haar) == len(PHOTO_FACES)
    assert all(row[column] is None for row in haar for column in DETECTION_COLUMNS)
    assert all(landmark_points(row) is None for row in haar)
    whole = find_faces(np.full((48, 48), 128, np.uint8), make_detector("yunet")).rows()
    assert [row["box_source"] for row in whole] == ["whole_image"] and whole[0]["score"] is None


def test_a_small_image_is_classified_whole_without_detection_even_where_yunet_finds_a_face() -> None:
    """A 48x48 face crop is what the classifier was trained on: it is taken whole, and the detector
    is not run, though YuNet finds the face in it and would re-crop it (a smaller, aligned box)."""
    from fer_pipeline.core.faces.crops import crop_faces, find_faces
    from fer_pipeline.core.faces.detector import make_detector
    from fer_pipeline.demo import draw_face

    class CountingDetector:
        def __init__(self) -> None:
            self.inner, self.calls = make_detector("yunet"), 0

        def detect_faces(self, image, gray=None, channels="rgb"):
            self.calls += 1
            return self.inner.detect_faces(image, gray=gray, channels=channels)

    crop = draw_face(3, np.random.default_rng(0))
    detector = CountingDetector()
    detected = find_faces(crop, detector, whole_image_max_side=0)
    assert detector.calls == 1 and detected.box_source == "detector" and len(detected.boxes) == 1
    assert detected.boxes[0] != (0, 0, 48, 48) and not np.array_equal(detected.crops[0], crop)
    for align in (True, False):
        whole = find_faces(crop, detector, align=align)  # the default rule: up to 100 px
        assert detector.calls == 1  # not run again
        assert (whole.boxes, whole.box_source, whole.detections) == ([(0, 0, 48, 48)], "whole_image", [])
        np.testing.assert_array_equal(whole.crops, crop_faces(crop, [(0, 0, 48, 48)], margin=0.0))
        np.testing.assert_array_equal(whole.crops[0], crop)
    assert find_faces(np.pad(crop, 27), detector).box_source == "detector"  # 102 px: a photo


def test_find_faces_takes_bgr_as_well_as_rgb_and_grey_once() -> None:
    import cv2
    import pytest

    from fer_pipeline.core.faces.crops import find_faces
    from fer_pipeline.core.faces.detector import make_detector
    from fer_pipeline.demo import draw_photo
    from tests.core.photo_files import PHOTO_FACES

    photo = draw_photo(PHOTO_FACES, rng=np.random.default_rng(1))
    bgr = cv2.cvtColor(photo, cv2.COLOR_RGB2BGR)
    for kind in ("haar", "yunet"):
        detector = make_detector(kind)
        for align in (False, True):
            from_rgb = find_faces(photo, detector, align=align)
            from_bgr = find_faces(bgr, detector, align=align, channels="bgr")
            assert len(from_rgb.boxes) == 2 and from_bgr.boxes == from_rgb.boxes
            assert from_bgr.detections == from_rgb.detections
            np.testing.assert_array_equal(from_bgr.crops, from_rgb.crops)
        # BGR read as RGB is another image (red and blue swapped): the order matters.
        assert not np.array_equal(find_faces(bgr, detector).crops, find_faces(photo, detector).crops)
    with pytest.raises(ValueError, match="channels must be one of rgb, bgr"):
        find_faces(photo, make_detector("haar"), channels="BGR ")
