"""core.evaluation.external_listing and external_sets: listing and labelling external sets,
decoding crops and photos, counting.

Generated sets only (tests/core/external_sets.py). A model that always predicts one class makes
every prediction, and so every count, known in advance.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.evaluation import external_listing as el
from fer_pipeline.core.evaluation import external_sets as ee
from fer_pipeline.core.faces.crops import find_faces
from fer_pipeline.core.faces.detector import FaceDetector
from fer_pipeline.core.faces.images import load_image
from fer_pipeline.core.faces.recognizer import FaceFinder
from tests.core.external_sets import (
    CROP_MAP,
    ConstantModel,
    constant_config,
    one_face_photo,
    save_rgb,
    two_face_photo,
    write_crops,
    write_photos,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HAPPY = CLASSES.index("happy")


def _evaluate(sets: dict, predicted: int = HAPPY) -> dict:
    return ee.evaluate_external_sets(ConstantModel(predicted), constant_config(), sets, device="cpu", batch_size=4)


def _row(report: dict, name: str) -> list[int]:
    return report["confusion"][report["classes"].index(name)]


# ---------------------------------------------------------------------------- parameters


def test_no_sets_is_an_empty_report():
    assert _evaluate({}) == {} and _evaluate(None) == {}


@pytest.mark.parametrize(
    ("entry", "error", "message"),
    [
        ({"paht": "x", "kind": "crops"}, ValueError, "'paht' (did you mean 'path'?)"),
        ({"kind": "crops"}, ValueError, "no path given"),
        ({"path": "x", "kind": "faces"}, ValueError, "kind must be one of crops, photos"),
        ({"path": "x", "kind": "crops", "class_map": ["anger"]}, ValueError, "class_map must be a mapping"),
        ({"path": "x", "kind": "crops", "class_map": {"AN": "angry", "an": None}}, ValueError, "the same name"),
        ({"path": "x", "kind": "crops", "label_pattern": "^[A-Z]+"}, ValueError, "has no group"),
        ({"path": "x", "kind": "crops", "label_pattern": "(["}, ValueError, "is not a regular expression"),
        ({"path": "x", "kind": "photos", "detector": "yunett"}, el.ExternalSetError,
         "evaluate.external_sets.ckplus48.detector must be one of haar, yunet, got 'yunett' (did you mean 'yunet'?)"),
        ({"path": "x", "kind": "photos", "align": "yes"}, el.ExternalSetError,
         "evaluate.external_sets.ckplus48.align must be true or false, got 'yes'"),
        ({"path": "x", "kind": "photos", "detector": "haar", "min_score": 0.8}, el.ExternalSetError,
         "evaluate.external_sets.ckplus48.min_score needs the yunet detector"),
        ({"path": "x", "kind": "photos", "min_face": 5}, el.ExternalSetError,
         "evaluate.external_sets.ckplus48.min_face must be a fraction of the image's shorter side in [0, 1)"),
    ],
)
def test_bad_entries_are_refused_with_a_hint(entry, error, message):
    with pytest.raises(error, match=re.escape(message)):
        el.parse_external_sets({"ckplus48": entry})


def test_a_photo_sets_detector_has_its_least_score_and_smallest_face():
    (spec,) = el.parse_external_sets({"jaffe": {"path": "x", "kind": "photos", "min_score": 0.8, "min_face": 0.1}})
    detector = spec.make_detector()
    assert (detector.score_threshold, detector.min_size_fraction) == (0.8, 0.1)
    (default,) = el.parse_external_sets({"jaffe": {"path": "x", "kind": "photos"}})
    assert (default.make_detector().score_threshold, default.make_detector().min_size_fraction) == (0.6, 0.03)


def test_a_set_name_must_fit_metric_keys_and_file_names():
    with pytest.raises(ValueError, match="letters, digits"):
        el.parse_external_sets({"ck+/48": {"path": "x", "kind": "crops"}})


def test_a_missing_path_is_a_clear_error(tmp_path):
    missing = tmp_path / "CK+48"
    with pytest.raises(FileNotFoundError, match=f"evaluate.external_sets.ck.path: {re.escape(str(missing))} does "
                                                "not exist"):
        _evaluate({"ck": {"path": str(missing), "kind": "crops"}})


# ---------------------------------------------------------------------------- labels


def test_class_map_identity_mapping_and_drop(tmp_path):
    root = write_crops(tmp_path / "CK+48")
    (root / "README.txt").write_text("not a face")
    (root / "anger" / ".DS_Store").write_bytes(b"\0")
    report = _evaluate({"ck": {"path": str(root), "kind": "crops", "class_map": {**CROP_MAP, "fear": "fear"}}})["ck"]

    assert report["files"] == 9 and report["labelled"] == 7
    assert report["dropped_by_class_map"] == {"contempt": 2}
    assert report["resolved_class_names"] == {"anger": "angry", "Happy": "happy", "contempt": None,
                                              "sadness": "sad"}
    assert report["label_counts"] == {"angry": 3, "happy": 2, "sad": 2}
    assert report["unused_class_map_keys"] == ["fear"]
    assert report["ignored"] == 2 and {i["file"] for i in report["ignored_files"]} == {"README.txt",
                                                                                       "anger/.DS_Store"}
    assert (report["scored"], report["no_face"], report["unreadable"], report["multiple_faces"]) == (7, 0, 0, 0)
    # Every face predicted happy: rows sum to the class counts, only the happy column is filled.
    assert report["confusion_columns"] == [*CLASSES, "no_face"]
    for name, count in report["label_counts"].items():
        assert sum(_row(report, name)) == count == _row(report, name)[HAPPY]
    assert report["metrics"]["classes_present"] == ["angry", "happy", "sad"]
    assert report["metrics"]["accuracy"] == pytest.approx(2 / 7)
    assert report["metrics"]["balanced_accuracy"] == pytest.approx(1 / 3)  # recall 0, 1, 0
    assert report["metrics"]["macro_f1"] == pytest.approx((2 * (2 / 7) / (2 / 7 + 1)) / 3)  # happy's F1 only
    assert report["metrics"]["no_face_rate"] == 0.0
    json.dumps(report)


def test_unknown_names_stop_with_every_one_listed_and_a_map_to_start_from(tmp_path):
    root = write_crops(tmp_path / "CK+48")
    with pytest.raises(ValueError) as caught:
        _evaluate({"ck": {"path": str(root), "kind": "crops", "class_map": {"contempt": None}}})
    message = str(caught.value)
    assert "2 class name(s)" in message and "'anger'" in message and "'sadness'" in message
    assert "'Happy'" not in message and "'contempt'" not in message  # a model class, and a mapped name
    assert "class_map: {anger: angry, sadness: sad}" in message


def test_a_map_to_a_name_that_is_not_a_model_class_stops(tmp_path):
    root = write_crops(tmp_path / "CK+48")
    with pytest.raises(ValueError, match="not the model's classes: 'anger' -> 'angery'"):
        _evaluate({"ck": {"path": str(root), "kind": "crops", "class_map": {**CROP_MAP, "anger": "angery"}}})


def test_the_model_file_decides_the_label_space(tmp_path):
    """A model with a contempt class takes CK+'s contempt folder as it is, with no map entry."""
    root = write_crops(tmp_path / "CK+48")
    classes = [*CLASSES, "contempt"]
    config = {**constant_config(), "classes": classes, "num_classes": 8}
    reports = ee.evaluate_external_sets(ConstantModel(7, 8), config, {"ck": {
        "path": str(root), "kind": "crops", "class_map": {"anger": "angry", "sadness": "sad"}}}, device="cpu")
    report = reports["ck"]
    assert report["dropped_by_class_map"] == {} and report["label_counts"]["contempt"] == 2
    assert report["confusion_columns"] == [*classes, "no_face"]
    assert report["metrics"]["accuracy"] == pytest.approx(2 / 9)


def _jaffe_like(root):
    for name in ("KA.AN1.39.tiff", "KA.HA2.30.tiff", "KM.NE1.1.tiff", "YM.SA3.57.tiff", "YM.SU1.58.tiff"):
        save_rgb(root / name, np.full((64, 64, 3), 120, np.uint8))
    (root / "README").write_text("JAFFE")
    return root


JAFFE_MAP = {"AN": "angry", "DI": "disgust", "FE": "fear", "HA": "happy", "NE": "neutral", "SA": "sad",
             "SU": "surprise"}


def test_label_pattern_takes_the_class_from_the_file_name(tmp_path):
    root = _jaffe_like(tmp_path / "jaffe")
    spec = el.ExternalSet.from_params("jaffe", {"path": str(root), "kind": "crops", "class_map": JAFFE_MAP,
                                                "label_pattern": r"^[A-Z]+\.([A-Z]{2})\d"})
    listing = el.list_external_set(spec, CLASSES)
    labels = {rel: CLASSES[label] for rel, _path, label in listing.files}
    assert labels == {"KA.AN1.39.tiff": "angry", "KA.HA2.30.tiff": "happy", "KM.NE1.1.tiff": "neutral",
                      "YM.SA3.57.tiff": "sad", "YM.SU1.58.tiff": "surprise"}
    assert listing.ignored == [{"file": "README", "reason": "not an image (documentation or metadata file)"}]
    assert set(listing.unused_class_map_keys) == {"DI", "FE"}


def test_a_file_name_the_pattern_does_not_match_stops(tmp_path):
    root = _jaffe_like(tmp_path / "jaffe")
    save_rgb(root / "extra" / "photo_01.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"1 of 6 image files .*label_pattern .* does not match.*'extra/photo_01.png'"):
        _evaluate({"jaffe": {"path": str(root), "kind": "crops", "class_map": JAFFE_MAP,
                             "label_pattern": r"^[A-Z]+\.([A-Z]{2})\d"}})


# ---------------------------------------------------------------------------- crops


def test_crops_are_decoded_as_ingestion_decodes_training_faces(tmp_path):
    import cv2

    root = write_crops(tmp_path / "CK+48", {"anger": 2})
    spec = el.ExternalSet.from_params("ck", {"path": str(root), "kind": "crops", "class_map": CROP_MAP})
    listing = el.list_external_set(spec, CLASSES)
    faces = ee.crop_faces_of(listing)
    assert faces.crops.shape == (2, 48, 48) and faces.crops.dtype == np.uint8
    for crop, (_rel, path, _label) in zip(faces.crops, listing.files):
        bgr = cv2.imread(str(path))
        assert bgr.shape[0] in (64, 96)  # saved at another size, in colour
        expected = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), (48, 48), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(crop, expected)


def test_an_unreadable_file_is_listed_with_its_reason_and_not_scored(tmp_path):
    root = write_crops(tmp_path / "CK+48")
    (root / "anger" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # cut short: no IEND
    (root / "sadness" / "notes.jpeg").write_bytes(b"this is not an image")
    report = _evaluate({"ck": {"path": str(root), "kind": "crops", "class_map": CROP_MAP}})["ck"]
    assert report["labelled"] == 9 and report["unreadable"] == 2 and report["scored"] == 7
    reasons = {item["file"]: item["reason"] for item in report["unreadable_files"]}
    assert reasons["anger/broken.png"].startswith("truncated_image")
    assert reasons["sadness/notes.jpeg"].startswith("not_an_image")
    assert report["metrics"]["n"] == 7 and report["label_counts"] == {"angry": 3, "happy": 2, "sad": 2}


# ---------------------------------------------------------------------------- photos


def test_photos_a_photo_without_a_face_is_wrong_in_the_no_face_column(tmp_path):
    root = write_photos(tmp_path / "photos")
    report = _evaluate({"shots": {"path": str(root), "kind": "photos"}})["shots"]
    assert (report["files"], report["scored"], report["no_face"], report["multiple_faces"]) == (4, 3, 1, 1)
    assert report["no_face_files"] == ["angry/empty.png"] and report["multiple_faces_files"] == ["sad/group.jpg"]
    no_face = report["confusion_columns"].index("no_face")
    assert _row(report, "angry")[no_face] == 1 and sum(_row(report, "angry")) == 1
    assert sum(row[no_face] for row in report["confusion"]) == report["no_face"]
    # Hand-counted: happy 2/2 right, sad 0/1 (predicted happy), angry 0/1 (no face).
    assert _row(report, "happy")[HAPPY] == 2 and _row(report, "sad")[HAPPY] == 1
    metrics = report["metrics"]
    assert metrics["n"] == 4 and metrics["accuracy"] == pytest.approx(2 / 4)
    assert metrics["no_face_rate"] == pytest.approx(1 / 4) and metrics["accuracy_on_faces"] == pytest.approx(2 / 3)
    assert metrics["balanced_accuracy"] == pytest.approx(1 / 3)
    by_class = {row["class"]: row for row in report["per_class"]}
    assert by_class["angry"]["support"] == 1 and by_class["angry"]["recall"] == 0.0
    assert ee.flat_metrics({"shots": report}) == pytest.approx({
        "eval.external.shots.accuracy": 0.5, "eval.external.shots.macro_f1": metrics["macro_f1"],
        "eval.external.shots.balanced_accuracy": 1 / 3, "eval.external.shots.no_face_rate": 0.25,
        "eval.external.shots.recall.angry": 0.0, "eval.external.shots.recall.happy": 1.0,
        "eval.external.shots.recall.sad": 0.0,
    })


def test_photos_with_either_detector_find_the_same_faces(tmp_path):
    root = write_photos(tmp_path / "photos")
    reports = _evaluate({"haar": {"path": str(root), "kind": "photos", "detector": "haar"},
                         "cnn": {"path": str(root), "kind": "photos"}})
    assert (reports["haar"]["detector"], reports["cnn"]["detector"]) == ("haar", "yunet")  # yunet: the default
    for report in reports.values():
        assert (report["scored"], report["no_face"], report["multiple_faces"]) == (3, 1, 1)
    ee.check_external_sets({"cnn": {"path": str(root), "kind": "photos", "detector": "yunet"}}, CLASSES)


def test_photos_with_align_score_yunets_aligned_crops(tmp_path):
    from fer_pipeline.core.faces.detector import make_detector

    path = save_rgb(tmp_path / "happy" / "h0.jpg", one_face_photo(3, seed=0))
    spec = el.ExternalSet.from_params("jaffe", {"path": str(tmp_path), "kind": "photos", "detector": "yunet",
                                                "align": True})
    square = el.ExternalSet.from_params("jaffe", {"path": str(tmp_path), "kind": "photos", "align": False})
    assert spec.align and not square.align
    assert el.ExternalSet.from_params("jaffe", {"path": str(tmp_path), "kind": "photos"}).align  # the default
    report = _evaluate({"jaffe": {"path": str(tmp_path), "kind": "photos", "detector": "yunet", "align": True}})
    assert report["jaffe"]["align"] is True and report["jaffe"]["scored"] == 1
    faces = ee.photo_faces_of(el.list_external_set(spec, CLASSES),
                              FaceFinder.make("yunet", margin=0.2, whole_image_max_side=0, align=True))
    aligned = find_faces(load_image(path), make_detector("yunet"), margin=0.2, align=True)
    np.testing.assert_array_equal(faces.crops, aligned.crops)


def test_photos_the_largest_face_is_scored(tmp_path):
    path = save_rgb(tmp_path / "sad" / "group.jpg", two_face_photo())
    spec = el.ExternalSet.from_params("group", {"path": str(tmp_path), "kind": "photos"})
    detector = FaceDetector()
    faces = ee.photo_faces_of(el.list_external_set(spec, CLASSES), FaceFinder(detector, 0.2, 0))
    found = find_faces(load_image(path), detector, margin=0.2)
    assert len(found.boxes) == 2 and faces.multiple_faces == ["sad/group.jpg"]
    largest = int(np.argmax([w * h for *_xy, w, h in found.boxes]))
    assert found.boxes[largest][0] < 100  # the 150 px face on the left
    np.testing.assert_array_equal(faces.crops, found.crops[largest:largest + 1])


def test_small_photos_are_not_taken_as_face_crops(tmp_path):
    """The predict stage classifies a small image without a detection whole; a photo set does not."""
    save_rgb(tmp_path / "happy" / "tiny.png", np.full((48, 48, 3), 128, np.uint8))
    report = _evaluate({"tiny": {"path": str(tmp_path), "kind": "photos"}})["tiny"]
    assert report["no_face"] == 1 and report["scored"] == 0 and report["metrics"]["accuracy"] == 0.0


def test_every_set_is_checked_before_any_is_scored(tmp_path, monkeypatch):
    write_crops(tmp_path / "ok")
    calls = []
    monkeypatch.setattr(ee, "score_external_set", lambda *a, **k: calls.append(a))
    with pytest.raises(ValueError, match="evaluate.external_sets.bad"):
        _evaluate({"ok": {"path": str(tmp_path / "ok"), "kind": "crops", "class_map": CROP_MAP},
                   "bad": {"path": str(tmp_path / "ok"), "kind": "crops"}})
    assert calls == []
