"""Tests for core.faces.detector: the Haar cascade finds drawn faces, minimum sizes scale."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fer_pipeline.core.faces.detector import FaceDetector
from fer_pipeline.demo import draw_photo
from tests.core.photo_files import PHOTO_FACES, PHOTO_SEEDS


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


def test_explicit_min_size_is_in_full_resolution_pixels() -> None:
    gray = draw_photo(PHOTO_FACES, size=(960, 720), rng=np.random.default_rng(1), color=False)
    # Faces of 130-150 px, searched at half size: a 110-px minimum must become 55 px there to keep them.
    assert FaceDetector(detect_max_side=480, min_size=(110, 110)).detect(gray)
    assert FaceDetector(detect_max_side=480, min_size=(200, 200)).detect(gray) == []  # 100 px at that scale
    assert FaceDetector(detect_max_side=480, min_size=(10, 10))._min_size_for(gray[::2, ::2], 0.5) == (24, 24)


def test_make_detector_builds_either_kind_and_rejects_others_with_a_hint() -> None:
    from fer_pipeline.core.faces.detector import DEFAULT_DETECTOR, DETECTOR_KINDS, check_detector_kind, make_detector
    from fer_pipeline.core.faces.yunet import YuNetDetector

    assert DEFAULT_DETECTOR == "yunet" and DETECTOR_KINDS == ("haar", "yunet")
    assert isinstance(make_detector(), YuNetDetector)  # the default
    haar = make_detector("haar", detect_max_side=480)
    assert isinstance(haar, FaceDetector) and haar.detect_max_side == 480
    yunet = make_detector("yunet", detect_max_side=0)
    assert isinstance(yunet, YuNetDetector) and yunet.detect_max_side is None
    with pytest.raises(ValueError, match=r"detector must be one of haar, yunet, got 'yunnet' \(did you mean 'yunet'\?\)"):
        make_detector("yunnet")
    with pytest.raises(ValueError, match=r"predict.detector must be one of haar, yunet, got 'mtcnn'$"):
        check_detector_kind("mtcnn", "predict.detector")


def test_haar_detections_have_no_score_and_no_landmarks() -> None:
    photo = draw_photo(PHOTO_FACES, rng=np.random.default_rng(1))
    detector = FaceDetector()
    detections = detector.detect_faces(photo)
    assert [d.box for d in detections] == detector.detect(photo) and detections
    assert all(d.score is None and d.landmarks is None for d in detections)


def test_the_default_detector_and_alignment_are_the_same_everywhere() -> None:
    """``DEFAULT_DETECTOR`` and ``DEFAULT_ALIGN`` are what the parameter files, the serving config,
    an external photo set and the Python API take when nothing is said (fer-predict's flags:
    tests/test_predict_cli.py)."""
    from pathlib import Path

    import yaml

    from fer_pipeline.core.evaluation.external_listing import ExternalSet
    from fer_pipeline.core.faces.detector import DEFAULT_ALIGN, DEFAULT_DETECTOR
    from fer_pipeline.core.faces.recognizer import FaceFinder
    from fer_pipeline.core.faces.yunet import YuNetDetector
    from fer_pipeline.core.serving.requests import ServingConfig

    assert (DEFAULT_DETECTOR, DEFAULT_ALIGN) == ("yunet", True)
    conf = Path(__file__).resolve().parents[3] / "conf" / "base"
    for stage in ("predict", "serving"):
        params = yaml.safe_load((conf / f"parameters_{stage}.yml").read_text(encoding="utf-8"))[stage]
        assert (params["detector"], params["align"]) == (DEFAULT_DETECTOR, DEFAULT_ALIGN), stage
    assert (ServingConfig().detector, ServingConfig().align) == (DEFAULT_DETECTOR, DEFAULT_ALIGN)
    photos = ExternalSet.from_params("photos", {"path": "x", "kind": "photos"})
    assert (photos.detector, photos.align) == (DEFAULT_DETECTOR, DEFAULT_ALIGN)
    finder = FaceFinder.make()
    assert isinstance(finder.detector, YuNetDetector) and finder.align is DEFAULT_ALIGN


def test_detector_options_map_the_least_score_and_smallest_face_and_refuse_what_cannot_apply():
    from fer_pipeline.core.faces.detector import detector_options

    assert detector_options("yunet") == {"detect_max_side": 320}
    assert detector_options("haar", min_face=0.1) == {"detect_max_side": 320, "min_size_fraction": 0.1}
    assert detector_options("yunet", 0.8, 0.05, detect_max_side=0, detect_retry_max_side=0) == {
        "detect_max_side": None, "retry_max_side": None, "score_threshold": 0.8, "min_size_fraction": 0.05}
    assert detector_options("yunet", detect_max_side=480, detect_retry_max_side=640) == {
        "detect_max_side": 480, "retry_max_side": 640}
    # a second search no larger than the first would never run: said, not ignored
    with pytest.raises(ValueError, match=r"predict.detect_retry_max_side \(640\) must be larger than "
                                         r"predict.detect_max_side \(0, full resolution\), or 0 for no second"):
        detector_options("yunet", detect_max_side=None, detect_retry_max_side=640, where="predict")
    with pytest.raises(ValueError, match=r"detect_retry_max_side \(320\) must be larger than detect_max_side \(320\)"):
        detector_options("yunet", detect_retry_max_side=320)
    with pytest.raises(ValueError, match="serving.detect_retry_max_side needs the yunet detector"):
        detector_options("haar", detect_retry_max_side=800, where="serving")
    for bad in (16, -1, 320.0, True, "320"):
        with pytest.raises(ValueError, match=r"detect_max_side must be a whole number of pixels >= 24"):
            detector_options("haar", detect_max_side=bad)
    with pytest.raises(ValueError, match="predict.min_score needs the yunet detector"):
        detector_options("haar", min_score=0.8, where="predict")
    for bad in (0, 1.5, True, "high"):
        with pytest.raises(ValueError, match=r"min_score must be a number in \(0, 1\]"):
            detector_options("yunet", min_score=bad)
    for bad in (-0.1, 1, False):
        with pytest.raises(ValueError, match=r"min_face must be a fraction of the image's shorter side in \[0, 1\)"):
            detector_options("yunet", min_face=bad)
