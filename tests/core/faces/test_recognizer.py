"""Tests for core.faces.recognizer: the Python API, from a model file or an MLflow run, on paths,
bytes and arrays, and its refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.faces.crops import DETECTION_COLUMNS
from fer_pipeline.core.faces.detector import LANDMARKS
from fer_pipeline.core.faces.images import UnreadableImageError
from fer_pipeline.core.faces.recognizer import EmotionRecognizer, Face, FaceFinder
from fer_pipeline.core.model_files import RUN_MODEL_ARTIFACT, ModelFileError
from fer_pipeline.core.models import build_resnet34, load_model, model_config, save_model
from fer_pipeline.demo import draw_face, draw_photo
from tests.core.photo_files import PHOTO_FACES, CountingModel, assert_frontal_landmarks, write_image

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random-weight classifier's file (ResNet-18 layout, 44 px input), named as training names it."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "resnet34.pt"
    return save_model(path, build_resnet34(arch="resnet18"), model_config(arch="resnet18", input_size=44))


@pytest.fixture(scope="module")
def recognizer(model_file: Path) -> EmotionRecognizer:
    return EmotionRecognizer.load(model_file, device="cpu")


@pytest.fixture(scope="module")
def haar_recognizer(model_file: Path) -> EmotionRecognizer:
    return EmotionRecognizer.load(model_file, detector="haar", device="cpu")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """An RGB photo with two faces (``PHOTO_FACES``), both found by YuNet and by the Haar cascade."""
    return draw_photo(PHOTO_FACES, rng=np.random.default_rng(1))


def assert_same_faces(faces: list[Face], expected: list[Face]) -> None:
    assert [(f.box, f.box_source, f.emotion) for f in faces] == [(f.box, f.box_source, f.emotion) for f in expected]
    for face, other in zip(faces, expected, strict=True):
        np.testing.assert_allclose(list(face.probabilities.values()), list(other.probabilities.values()), atol=1e-6)


# ---------------------------------------------------------------------------- images in


def test_a_path_bytes_and_rgb_and_bgr_arrays_give_the_same_faces(recognizer, photo, tmp_path):
    path = write_image(tmp_path / "group.png", photo)  # lossless: the file decodes to ``photo``
    faces = recognizer.predict(photo)
    assert len(faces) == len(PHOTO_FACES) == 2
    assert faces[0].box[0] < faces[1].box[0]  # left to right
    assert_same_faces(recognizer.predict(path), faces)
    assert_same_faces(recognizer.predict(str(path)), faces)
    assert_same_faces(recognizer.predict(path.read_bytes()), faces)
    assert_same_faces(recognizer.predict(cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), channels="bgr"), faces)
    assert_same_faces(recognizer.predict(photo[..., ::-1], channels="bgr"), faces)  # a view with negative strides


def test_a_face_says_its_emotion_probabilities_box_and_source(recognizer, haar_recognizer, photo):
    face = recognizer.predict(photo)[0]
    assert list(face.probabilities) == list(CLASSES) == list(recognizer.classes)
    assert sum(face.probabilities.values()) == pytest.approx(1.0)
    assert face.emotion == max(face.probabilities, key=face.probabilities.get)
    assert face.confidence == face.probabilities[face.emotion]
    assert face.box_source == "detector" and all(isinstance(v, int) for v in face.box)
    assert face.score > 0.5 and list(face.landmarks) == list(LANDMARKS)  # YuNet, the default detector
    haar_face = haar_recognizer.predict(photo)[0]
    assert haar_face.box_source == "detector" and haar_face.score is None and haar_face.landmarks is None
    assert list(face.row()) == ["x", "y", "w", "h", "box_source", "emotion", "confidence",
                                *[f"prob_{name}" for name in CLASSES], *DETECTION_COLUMNS]
    with pytest.raises(AttributeError):
        face.emotion = "happy"  # frozen


@pytest.mark.parametrize("detector", ["yunet", "haar"])
def test_grey_images_need_no_channel_order(model_file, photo, detector):
    recognizer = EmotionRecognizer.load(model_file, detector=detector, device="cpu")
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    faces = recognizer.predict(grey)
    assert len(faces) == len(PHOTO_FACES)
    if detector == "haar":  # the cascade and the crops are grey either way (YuNet takes the colours)
        assert_same_faces(faces, recognizer.predict(photo))
    assert_same_faces(recognizer.predict(grey[..., None]), faces)
    assert_same_faces(recognizer.predict(grey, channels="bgr"), faces)


def test_a_photo_without_a_face_gives_none_and_a_small_image_is_a_face_crop(model_file):
    model, config = load_model(model_file)
    counting = CountingModel(model)
    recognizer = EmotionRecognizer(counting, config, device="cpu")
    assert recognizer.predict(np.full((240, 320, 3), 128, np.uint8)) == []
    assert counting.calls == 0  # nothing to classify
    crop = draw_face(3, np.random.default_rng(0))
    [face] = recognizer.predict(crop)
    assert (face.box, face.box_source) == ((0, 0, 48, 48), "whole_image")
    np.testing.assert_allclose(list(face.probabilities.values()), recognizer.classify_crops(crop), atol=1e-6)
    # Without the rule the crop goes to the detector: the cascade misses its face for lack of
    # surroundings, YuNet (the default) finds it and re-crops it (crops.find_faces).
    haar_off = EmotionRecognizer(model, config, detector="haar", device="cpu", whole_image_max_side=0)
    assert haar_off.predict(crop) == []
    [found] = EmotionRecognizer(model, config, device="cpu", whole_image_max_side=0).predict(crop)
    assert found.box_source == "detector" and found.box != (0, 0, 48, 48) and found.landmarks


def test_predict_many_classifies_every_face_in_one_call(model_file, photo):
    model, config = load_model(model_file)
    counting = CountingModel(model)
    recognizer = EmotionRecognizer(counting, config, device="cpu")
    blank = np.full((240, 320, 3), 128, np.uint8)
    many = recognizer.predict_many([photo, blank, photo[:, ::-1]])
    assert counting.calls == 1 and counting.batch_sizes == [4]
    assert [len(faces) for faces in many] == [2, 0, 2]
    assert_same_faces(many[0], recognizer.predict(photo))


def test_yunet_faces_carry_their_score_and_landmarks(model_file, photo):
    recognizer = EmotionRecognizer.load(model_file, detector="yunet", device="cpu")
    faces = recognizer.predict(photo)
    assert len(faces) == 2
    for face in faces:
        assert 0.5 <= face.score <= 1.0 and list(face.landmarks) == list(LANDMARKS)
        assert_frontal_landmarks(face.box, face.landmarks)
        row = face.row()
        assert (row["score"], row["right_eye_x"], row["right_eye_y"]) == (face.score, *face.landmarks["right_eye"])


def test_align_passes_through_to_the_crops(model_file, photo):
    """``align`` reaches ``find_faces``: YuNet's faces get the aligned crops, Haar's (no landmarks) the square."""
    from fer_pipeline.core.faces.crops import find_faces

    aligned = EmotionRecognizer.load(model_file, detector="yunet", align=True, device="cpu")
    assert aligned.finder.align and "align=True" in repr(aligned)
    expected = find_faces(photo, aligned.finder.detector, margin=0.2, align=True)
    np.testing.assert_array_equal(aligned.find_faces(photo).crops, expected.crops)
    square = find_faces(photo, aligned.finder.detector, margin=0.2)
    assert not np.array_equal(expected.crops, square.crops)
    haar = EmotionRecognizer.load(model_file, detector="haar", align=True, device="cpu")
    np.testing.assert_array_equal(haar.find_faces(photo).crops, find_faces(photo, haar.finder.detector).crops)
    with pytest.raises(ValueError, match="align must be True or False"):
        EmotionRecognizer.load(model_file, align="yes")


def test_bad_images_are_refused_with_what_is_wrong(recognizer, tmp_path):
    with pytest.raises(TypeError, match="must be uint8"):
        recognizer.predict(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"drop the alpha channel"):
        recognizer.predict(np.zeros((64, 64, 4), np.uint8))
    with pytest.raises(ValueError, match=r"grey \(H, W\) or colour \(H, W, 3\)"):
        recognizer.predict(np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"channels must be one of rgb, bgr .* got 'grb'"):
        recognizer.predict(np.zeros((64, 64, 3), np.uint8), channels="grb")
    with pytest.raises(TypeError, match=r"file path, the bytes of an image file or a numpy array, got list"):
        recognizer.predict([[0, 1], [2, 3]])
    with pytest.raises(FileNotFoundError, match="no such image file"):
        recognizer.predict(tmp_path / "absent.jpg")
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(UnreadableImageError, match="notes.jpg"):
        recognizer.predict(tmp_path / "notes.jpg")
    with pytest.raises(UnreadableImageError):
        recognizer.predict(b"not an image")


# ---------------------------------------------------------------------------- crops


def test_classify_crops_gives_a_row_of_probabilities_per_crop(recognizer):
    crops = np.stack([draw_face(k, np.random.default_rng(k)) for k in range(3)])
    probabilities = recognizer.classify_crops(crops)
    assert probabilities.shape == (3, len(CLASSES)) and probabilities.dtype == np.float64
    np.testing.assert_allclose(probabilities.sum(1), 1.0)
    np.testing.assert_allclose(recognizer.classify_crops(crops[1]), probabilities[1], atol=1e-6)
    assert recognizer.classify_crops(list(crops)).shape == (3, len(CLASSES))  # a list of faces
    assert recognizer.classify_crops(np.zeros((0, 48, 48), np.uint8)).shape == (0, len(CLASSES))


def test_classify_crops_refuses_what_is_not_48x48_grey_uint8(recognizer):
    with pytest.raises(TypeError, match="crops must be uint8"):
        recognizer.classify_crops(np.zeros((2, 48, 48), np.float32))
    with pytest.raises(ValueError, match=r"got shape \(2, 64, 64\)"):
        recognizer.classify_crops(np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(ValueError, match=r"make colour faces grey"):
        recognizer.classify_crops(np.zeros((2, 48, 48, 3), np.uint8))


# ---------------------------------------------------------------------------- construction


def test_options_are_checked_when_the_recognizer_is_made(model_file):
    model, config = load_model(model_file)
    with pytest.raises(ValueError, match=r"'margn' \(did you mean 'margin'\?\)"):
        EmotionRecognizer(model, config, margn=0.3)
    with pytest.raises(ValueError, match="tta must be one of"):
        EmotionRecognizer(model, config, tta="five_crop")
    with pytest.raises(ValueError, match="device must be auto, cpu"):
        EmotionRecognizer(model, config, device="gpu")
    with pytest.raises(ValueError, match="amp="):
        EmotionRecognizer(model, config, amp="fast")
    with pytest.raises(ValueError, match="margin must be a number >= 0"):
        EmotionRecognizer(model, config, margin=-0.1)
    with pytest.raises(ValueError, match="detector must be one of haar, yunet"):
        EmotionRecognizer(model, config, detector="cnn")
    with pytest.raises(TypeError, match="not both"):
        EmotionRecognizer(model, config, finder=FaceFinder.make(), margin=0.3)
    recognizer = EmotionRecognizer(model, config, detector="yunet", detect_max_side=None, margin=0.3,
                                   whole_image_max_side=0, tta="flip", amp="off")
    finder = recognizer.finder
    assert (finder.detector.detect_max_side, finder.margin, finder.whole_image_max_side) == (None, 0.3, 0)
    assert repr(recognizer).startswith("EmotionRecognizer(classes=['angry', ") and "detector=YuNetDetector" in repr(
        recognizer) and "tta='flip'" in repr(recognizer)


def test_load_keeps_the_model_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        EmotionRecognizer.load(tmp_path / "absent.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="is not a model file of this project"):
        EmotionRecognizer.load(tmp_path / "garbage.pt")


def test_from_mlflow_takes_the_model_file_where_training_logs_it(model_file, recognizer, photo, tmp_path):
    """``resnet_model`` (conf/base/catalog.yml) logs the file under ``RUN_MODEL_ARTIFACT``;
    the run here logs it there as kedro-mlflow does, in a store of its own."""
    from mlflow import MlflowClient

    catalog = yaml.safe_load((REPO / "conf/base/catalog.yml").read_text(encoding="utf-8"))
    assert catalog["resnet_model"]["artifact_path"] == RUN_MODEL_ARTIFACT
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("fer", artifact_location=(tmp_path / "mlruns").as_uri())
    trained, untrained = client.create_run(experiment).info.run_id, client.create_run(experiment).info.run_id
    client.log_artifact(trained, str(model_file), artifact_path=RUN_MODEL_ARTIFACT)
    client.log_text(untrained, "no model here", "reports/notes.txt")

    from_run = EmotionRecognizer.from_mlflow(trained, tracking_uri=uri, device="cpu", margin=0.3)
    assert from_run.finder.margin == 0.3
    assert_same_faces(from_run.predict(photo), EmotionRecognizer.load(model_file, device="cpu", margin=0.3)
                      .predict(photo))
    with pytest.raises(ModelFileError, match=f"MLflow run {untrained} .* logged no model file"):
        EmotionRecognizer.from_mlflow(untrained, tracking_uri=uri)
    with pytest.raises(ModelFileError, match="no MLflow run '0123abcd'"):
        EmotionRecognizer.from_mlflow("0123abcd", tracking_uri=uri)


def test_import_fer_pipeline_stays_light_and_exports_the_recognizer():
    code = ("import sys, fer_pipeline; assert 'torch' not in sys.modules and 'cv2' not in sys.modules; "
            "from fer_pipeline import EmotionRecognizer, Face; "
            "from fer_pipeline.core.faces.recognizer import EmotionRecognizer as R; assert EmotionRecognizer is R; "
            "print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_the_least_score_and_smallest_face_reach_the_detector(model_file, photo):
    assert len(EmotionRecognizer.load(model_file).predict(photo)) == 2
    assert EmotionRecognizer.load(model_file, min_face=0.9).predict(photo) == []  # faces are under 90 % of the side
    assert EmotionRecognizer.load(model_file, min_score=0.999).predict(photo) == []
    assert EmotionRecognizer.load(model_file, detector="haar", min_face=0.9).predict(photo) == []
    with pytest.raises(TypeError, match="a Detector object keeps its own"):
        FaceFinder.make(FaceFinder.make().detector, min_score=0.5)


# ------------------------------------------------------------------------- the onnxruntime back-end


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tests.core.onnx_files import small_model_files

    return small_model_files(tmp_path_factory.mktemp("onnx"))


def assert_close_faces(faces: list[Face], expected: list[Face]) -> None:
    """The same faces and emotions, probabilities within float32 rounding of another back-end."""
    assert [(f.box, f.box_source, f.emotion, f.landmarks) for f in faces] == [
        (f.box, f.box_source, f.emotion, f.landmarks) for f in expected]
    for face, other in zip(faces, expected, strict=True):
        np.testing.assert_allclose(list(face.probabilities.values()), list(other.probabilities.values()), atol=1e-5)


def test_the_backend_follows_the_file_or_the_choice(onnx_files, photo):
    pt, onnx = onnx_files
    by_torch = EmotionRecognizer.load(pt, device="cpu", amp="off")
    from_onnx = EmotionRecognizer.load(onnx)
    converted = EmotionRecognizer.load(pt, backend="onnxruntime")
    assert (by_torch.backend, from_onnx.backend, converted.backend) == ("torch", "onnxruntime", "onnxruntime")
    assert "backend='onnxruntime'" in repr(from_onnx) and from_onnx.classes == by_torch.classes
    expected = by_torch.predict(photo)
    assert len(expected) == 2
    assert_close_faces(from_onnx.predict(photo), expected)
    assert_close_faces(converted.predict(photo), expected)


def test_onnxruntime_options_that_cannot_apply_are_refused(onnx_files):
    pt, onnx = onnx_files
    with pytest.raises(ValueError, match="only ONNX Runtime runs: use backend onnxruntime"):
        EmotionRecognizer.load(onnx, backend="torch")
    with pytest.raises(ValueError, match="backend must be one of torch, onnxruntime, got 'tf'"):
        EmotionRecognizer.load(pt, backend="tf")
    with pytest.raises(ValueError, match="runs on the CPU: device must be auto or cpu"):
        EmotionRecognizer.load(onnx, device="cuda")
    with pytest.raises(ValueError, match="amp on is torch's bf16 autocast"):
        EmotionRecognizer.load(onnx, amp="on")
    assert EmotionRecognizer.load(onnx, device="cpu", amp="auto").amp == "off"  # float32: what runs


def test_from_mlflow_runs_the_logged_onnx_file_or_converts_the_model(onnx_files, photo, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from fer_pipeline.core import onnx_export

    pt, onnx = onnx_files
    catalog = yaml.safe_load((REPO / "conf/base/catalog.yml").read_text(encoding="utf-8"))
    assert catalog["resnet_onnx"]["artifact_path"] == RUN_MODEL_ARTIFACT  # logged beside the .pt
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("fer", artifact_location=(tmp_path / "mlruns").as_uri())
    both, pt_only = client.create_run(experiment).info.run_id, client.create_run(experiment).info.run_id
    for run, files in ((both, (pt, onnx)), (pt_only, (pt,))):
        for file in files:
            client.log_artifact(run, str(file), artifact_path=RUN_MODEL_ARTIFACT)

    expected = EmotionRecognizer.load(pt, device="cpu", amp="off").predict(photo)
    assert_close_faces(EmotionRecognizer.from_mlflow(pt_only, tracking_uri=uri, backend="onnxruntime").predict(photo),
                       expected)
    monkeypatch.setattr(onnx_export, "onnx_bytes", None)  # the logged file is taken: nothing is converted
    from_run = EmotionRecognizer.from_mlflow(both, tracking_uri=uri, backend="onnxruntime")
    assert from_run.backend == "onnxruntime"
    assert_close_faces(from_run.predict(photo), expected)
    assert EmotionRecognizer.from_mlflow(both, tracking_uri=uri).backend == "torch"
