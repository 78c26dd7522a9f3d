"""Tests for core.serving: request rows -> faces -> the answer, the refusals, the model cache."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.faces.detector import FaceDetector
from fer_pipeline.core.faces.recognizer import EmotionRecognizer
from fer_pipeline.core.models import build_resnet34, model_config, save_model
from fer_pipeline.core.predict.photos import predict_photos
from fer_pipeline.core.serving.requests import (
    MAX_REPORTED_ERRORS,
    ServingConfig,
    ServingInputError,
    cached_model,
    classify_request_faces,
    crop_from_pixels,
    find_request_faces,
    output_columns,
    request_json,
)
from fer_pipeline.demo import draw_face, draw_photo

REPO = Path(__file__).resolve().parents[3]
PHOTO_FACES = [(3, (60, 90, 130, 150)), (5, (290, 80, 120, 140))]  # both found by the cascade (photo_files)
CONFIG = ServingConfig(device="cpu")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image)[1].tobytes()


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture(scope="module")
def photo() -> bytes:
    return jpeg(draw_photo(PHOTO_FACES, rng=np.random.default_rng(1)))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    return save_model(path, build_resnet34(arch="resnet18"), model_config(arch="resnet18", input_size=44))


# ---------------------------------------------------------------------------- finding faces


def test_a_photo_a_crop_and_a_photo_without_faces(photo):
    crop = draw_face(2, np.random.default_rng(0))
    blank = jpeg(np.full((240, 320, 3), 128, np.uint8))
    requests = pd.DataFrame([{"image": b64(photo)}, {"pixels": crop.tolist()}, {"image": b64(blank)}])
    found = find_request_faces(requests, CONFIG)
    assert found.num_inputs == 3 and found.no_face == [2]
    assert [(r["input_index"], r["face_index"], r["box_source"]) for r in found.rows] == [
        (0, 0, "detector"), (0, 1, "detector"), (1, 0, "crop")]
    assert found.crops.shape == (3, 48, 48) and found.crops.dtype == np.uint8
    np.testing.assert_array_equal(found.crops[2], crop)  # the crop is taken as given
    assert (found.rows[2]["x"], found.rows[2]["y"], found.rows[2]["w"], found.rows[2]["h"]) == (0, 0, 48, 48)


def test_image_cells_take_bytes_base64_with_line_breaks_and_data_urls(photo):
    wrapped = base64.encodebytes(photo).decode("ascii")  # 76-character lines, as `base64` prints
    assert "\n" in wrapped
    cells = [photo, wrapped, "data:image/jpeg;base64," + b64(photo)]
    found = find_request_faces(pd.DataFrame({"image": cells}), CONFIG)
    assert [r["input_index"] for r in found.rows] == [0, 0, 1, 1, 2, 2]
    np.testing.assert_array_equal(found.crops[:2], found.crops[2:4])


def test_a_small_image_is_classified_whole_as_fer_predict_does():
    face = png(draw_face(3, np.random.default_rng(0)))
    for detector in ("yunet", "haar"):
        found = find_request_faces([{"image": b64(face)}], ServingConfig(detector=detector, device="cpu"))
        assert [(r["box_source"], r["w"], r["h"]) for r in found.rows] == [("whole_image", 48, 48)]
    # Off, the crop goes to the detector: Haar misses its face, YuNet (the default) re-crops it.
    off = find_request_faces([{"image": b64(face)}], ServingConfig(detector="haar", device="cpu",
                                                                   whole_image_max_side=0))
    assert off.rows == [] and off.no_face == [0]
    off = find_request_faces([{"image": b64(face)}], ServingConfig(device="cpu", whole_image_max_side=0))
    assert [r["box_source"] for r in off.rows] == ["detector"] and (off.rows[0]["w"], off.rows[0]["h"]) != (48, 48)


def test_cells_left_empty_in_any_form_are_skipped(photo):
    crop = np.zeros((48, 48), np.uint8).tolist()
    for empty in (None, float("nan"), np.float32("nan"), pd.NA):
        rows = [{"image": b64(photo), "pixels": empty}, {"image": empty, "pixels": crop}]
        found = find_request_faces(rows, CONFIG)
        assert [r["box_source"] for r in found.rows] == ["detector", "detector", "crop"], empty


def test_request_json_is_what_the_server_parses(photo):
    body = json.loads(request_json([photo, np.zeros((48, 48), np.uint8)]))
    assert body == {"dataframe_records": [{"image": b64(photo)}, {"pixels": [[0] * 48] * 48}]}
    found = find_request_faces(pd.DataFrame(body["dataframe_records"]), CONFIG)  # NaN in the cells left empty
    assert [r["box_source"] for r in found.rows] == ["detector", "detector", "crop"]


# ---------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"image": b64(b"this is not an image")}, "row 0: not an image"),
        ({"image": "%%% not base64 %%%"}, "row 0: image is not valid base64"),
        ({"image": ""}, "row 0: empty (0 bytes)"),
        ({"image": 42}, "row 0: image must be base64 text of an image file, got int"),
        ({"pixels": np.zeros((47, 48)).tolist()}, "row 0: pixels must be a 48x48 grey face, got shape (47, 48)"),
        ({"pixels": np.zeros((48, 48, 3)).tolist()}, "got shape (48, 48, 3) (one grey channel, no colour axis)"),
        ({"pixels": [[1, 2], [3]]}, "row 0: pixels must be a 48x48 array"),
        ({"pixels": np.full((48, 48), 300).tolist()}, "row 0: pixels must be 0-255, got values from 300 to 300"),
        ({"pixels": np.full((48, 48), 0.5).tolist()}, "got fractions from 0.5 to 0.5: multiply them by 255"),
        ({"pixels": [["a"] * 48] * 48}, "row 0: pixels must be numbers 0-255"),
        ({"image": None, "pixels": None}, "row 0: no image and no pixels"),
    ],
)
def test_a_bad_input_is_refused_naming_the_row_and_the_problem(row, message):
    with pytest.raises(ServingInputError, match="1 of 1 inputs refused") as refused:
        find_request_faces([row], CONFIG)
    assert message in str(refused.value)


def test_a_truncated_jpeg_is_refused(photo):
    with pytest.raises(ServingInputError, match=r"row 0: truncated JPEG \(no end-of-image marker\)"):
        find_request_faces([{"image": b64(photo[: len(photo) // 2])}], CONFIG)


def test_an_image_over_the_pixel_limit_is_refused_before_it_is_decoded(monkeypatch):
    big = png(np.zeros((100, 101), np.uint8))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    with pytest.raises(ServingInputError,
                       match=r"row 0: 101x100 = 10,100 pixels is over the limit of 10,000 \(serving.max_pixels\)"):
        find_request_faces([{"image": b64(big)}], ServingConfig(device="cpu", max_pixels=10_000))


def test_every_bad_row_is_named_and_good_rows_are_not_classified(photo):
    rows = [{"image": b64(photo)}, {"image": b64(b"junk")}, {"pixels": [[0]]}, {"image": b64(photo)}]
    with pytest.raises(ServingInputError) as refused:
        find_request_faces(rows, CONFIG)
    text = str(refused.value)
    assert text.startswith("2 of 4 inputs refused: row 1: not an image") and "; row 2: pixels must be" in text
    many = [{"image": b64(b"junk")}] * (MAX_REPORTED_ERRORS + 3)
    with pytest.raises(ServingInputError, match="; and 3 more$"):
        find_request_faces(many, CONFIG)


def test_request_shape_refusals():
    # MLflow hands over an empty table for {"photo": ...} and for {"dataframe_records": []} alike
    for nothing in (pd.DataFrame({"photo": ["x"]}), pd.DataFrame(), []):
        with pytest.raises(ServingInputError, match=r"no image and no pixels column \(or no inputs at all\)"):
            find_request_faces(nothing, CONFIG)
    with pytest.raises(ServingInputError, match="the request has no inputs"):
        find_request_faces(pd.DataFrame({"image": []}), CONFIG)
    with pytest.raises(ServingInputError, match=r"3 inputs, over the limit of 2 \(serving.max_inputs\)"):
        find_request_faces([{"pixels": np.zeros((48, 48)).tolist()}] * 3, ServingConfig(device="cpu", max_inputs=2))
    with pytest.raises(ServingInputError, match="must be a table of inputs, got str"):
        find_request_faces("image.jpg", CONFIG)


def test_crop_from_pixels_accepts_integers_and_whole_floats():
    crop = crop_from_pixels(np.arange(48 * 48).reshape(48, 48) % 256)
    assert crop.dtype == np.uint8 and crop[0, 1] == 1
    assert crop_from_pixels(np.full((48, 48), 255.0)).max() == 255


# ---------------------------------------------------------------------------- the answer


def test_the_answer_matches_fer_predict_on_the_same_file(photo, model_file, tmp_path):
    """One implementation: the served path and fer-predict's give the same boxes and probabilities."""
    (tmp_path / "group.jpg").write_bytes(photo)
    model, config = cached_model(model_file, "cpu").model, cached_model(model_file, "cpu").config
    expected = predict_photos([tmp_path / "group.jpg"], EmotionRecognizer(model, config, device="cpu"),
                              progress=False).rows
    found = find_request_faces([{"image": b64(photo)}], CONFIG)
    answer = classify_request_faces(found, model_file, CONFIG)
    assert len(answer) == len(expected) == 2
    for (_, served), local in zip(answer.iterrows(), expected, strict=True):
        assert {k: served[k] for k in ("face_index", "x", "y", "w", "h", "box_source", "emotion")} == {
            k: local[k] for k in ("face_index", "x", "y", "w", "h", "box_source", "emotion")}
        np.testing.assert_allclose([served[f"prob_{c}"] for c in CLASSES], [local[f"prob_{c}"] for c in CLASSES],
                                   rtol=0, atol=1e-6)


def test_the_answer_has_a_row_per_face_and_per_input_without_one_in_request_order(photo, model_file):
    blank = jpeg(np.full((240, 320, 3), 128, np.uint8))
    rows = [{"image": b64(blank)}, {"image": b64(photo)}, {"pixels": draw_face(0, np.random.default_rng(1)).tolist()}]
    answer = classify_request_faces(find_request_faces(rows, CONFIG), model_file, CONFIG)
    assert list(answer.columns) == output_columns(CLASSES)
    assert list(zip(answer["input_index"], answer["status"])) == [(0, "no_face"), (1, "face"), (1, "face"), (2, "face")]
    no_face = answer.iloc[0].to_dict()
    assert all(no_face[c] is None for c in output_columns(CLASSES)[2:])  # JSON null, never NaN
    faces = answer[answer["status"] == "face"]
    probs = faces[[f"prob_{c}" for c in CLASSES]].to_numpy(dtype=float)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert list(faces["emotion"]) == [CLASSES[i] for i in probs.argmax(1)]
    assert isinstance(faces.iloc[0]["x"], int) and isinstance(faces.iloc[0]["confidence"], float)
    json.dumps(answer.to_dict(orient="records"), allow_nan=False)  # strict JSON


def test_a_request_without_faces_is_answered_with_the_model_s_classes(model_file, tmp_path):
    blank = jpeg(np.full((240, 320, 3), 128, np.uint8))
    found = find_request_faces([{"image": b64(blank)}], CONFIG)
    answer = classify_request_faces(found, model_file, CONFIG)  # the columns come from the model's classes
    assert list(answer.columns) == output_columns(CLASSES) and list(answer["status"]) == ["no_face"]
    with pytest.raises(FileNotFoundError):  # so a missing model fails every request alike
        classify_request_faces(found, tmp_path / "absent.pt", CONFIG)


# ---------------------------------------------------------------------------- the model


def test_the_model_is_loaded_once_per_file_version(model_file, tmp_path):
    copy = tmp_path / "model.pt"
    copy.write_bytes(model_file.read_bytes())
    first = cached_model(copy, "cpu")
    assert cached_model(copy, "cpu") is first
    assert first.model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    os.utime(copy, ns=(0, copy.stat().st_mtime_ns + 10**9))  # a new training run wrote it again
    assert cached_model(copy, "cpu") is not first


@pytest.mark.slow
def test_concurrent_requests_share_one_model_safely(model_file, photo, tmp_path):
    """Threads decode, detect and classify at once, as the scoring server's thread pool does, in
    a child process so that a crash fails one test. Seen before the fixes: SIGSEGV in torch's
    Module._apply (threads converting one module), and threads importing cv2 together finding
    it half-initialised (no ``cv2.data``), which killed a thread."""
    (tmp_path / "photo.jpg").write_bytes(photo)
    code = textwrap.dedent(f"""
        import base64, threading, numpy as np
        from fer_pipeline.core.serving.requests import ServingConfig, classify_request_faces, find_request_faces
        config = ServingConfig(device="cpu")
        photo = base64.b64encode(open({str(tmp_path / "photo.jpg")!r}, "rb").read()).decode()
        rows = [{{"pixels": np.full((48, 48), k * 20).tolist()}} for k in range(3)] + [{{"image": photo}}]
        answers = []
        def work():
            for _ in range(15):
                answers.append(classify_request_faces(find_request_faces(rows, config), {str(model_file)!r}, config))
        threads = [threading.Thread(target=work) for _ in range(4)]
        [t.start() for t in threads]; [t.join() for t in threads]
        first = answers[0].to_dict()
        assert len(answers) == 60 and all(a.to_dict() == first for a in answers)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"


# ---------------------------------------------------------------------------- parameters


def test_serving_config_defaults_equal_conf_base():
    params = yaml.safe_load((REPO / "conf/base/parameters_serving.yml").read_text())["serving"]
    assert ServingConfig.from_params(params) == ServingConfig()


def test_serving_config_rejects_typos_and_bad_values():
    with pytest.raises(ValueError, match=r"'max_pixel' \(did you mean 'max_pixels'\?\)"):
        ServingConfig.from_params({"max_pixel": 10})
    with pytest.raises(ValueError, match="serving.tta must be one of"):
        ServingConfig(tta="five_crop")
    with pytest.raises(ValueError, match="serving.max_inputs must be >= 1"):
        ServingConfig(max_inputs=0)
    with pytest.raises(ValueError, match="serving.device must be auto, cpu, cuda, cuda:1, ..., got 'gpu'"):
        ServingConfig(device="gpu")
    with pytest.raises(ValueError, match="serving.whole_image_max_side must be >= 0"):
        ServingConfig(whole_image_max_side=-1)
    with pytest.raises(ValueError, match="amp='fast': use one of auto, on, off"):
        ServingConfig(amp="fast")
    with pytest.raises(ValueError, match="serving.detect_max_side must be a whole number of pixels >= 24"):
        ServingConfig(detect_max_side=16)
    with pytest.raises(ValueError, match=r"serving.detector must be one of haar, yunet, got 'Haar' \(did you mean 'haar'\?\)"):
        ServingConfig(detector="Haar")
    assert ServingConfig().detector == "yunet" and ServingConfig(detector="haar").detector == "haar"
    assert ServingConfig().align is True and ServingConfig(align=False).align is False
    assert ServingConfig(amp=False).amp == "off" and ServingConfig(detect_max_side=None).detect_max_side is None
    assert ServingConfig(device="cuda:1").device == "cuda:1"  # checked for form, not for presence
    with pytest.raises(ValueError, match="serving.align must be true or false, got 'yes'"):
        ServingConfig(align="yes")
    with pytest.raises(ValueError, match="serving.min_score needs the yunet detector"):
        ServingConfig(detector="haar", min_score=0.8)
    with pytest.raises(ValueError, match=r"serving.min_face must be a fraction"):
        ServingConfig(min_face=48)
    assert ServingConfig(min_score=0.8, min_face=0.1).min_face == 0.1
    with pytest.raises(ValueError, match=r"serving.detect_retry_max_side must be a whole number"):
        ServingConfig(detect_retry_max_side=10)


def test_one_detector_per_detection_scale_shared_by_the_threads():
    from fer_pipeline.core.serving import requests as serving
    haar = ServingConfig(detector="haar", detect_max_side=320)
    first = serving.shared_detector(haar)
    assert serving.shared_detector(ServingConfig(detector="haar")) is first and isinstance(first, FaceDetector)
    assert serving.shared_detector(ServingConfig(detector="haar", detect_max_side=None)) is not first
    assert serving.shared_detector(ServingConfig(detector="haar", detect_max_side=0)).detect_max_side is None
    import threading

    other = []
    thread = threading.Thread(target=lambda: other.append((serving.shared_detector(haar),
                                                          serving.shared_detector(haar)._load_cascade())))
    thread.start()
    thread.join()
    assert other[0][0] is first and other[0][1] is not first._load_cascade()  # its own cascade per thread


def test_serving_detector_yunet_finds_the_faces_with_its_own_shared_detector(photo):
    from fer_pipeline.core.faces.yunet import YuNetDetector
    from fer_pipeline.core.serving import requests as serving

    config = ServingConfig(detector="yunet", align=False, tta="none", device="cpu")
    found = find_request_faces([{"image": b64(photo)}], config)
    haar = find_request_faces([{"image": b64(photo)}], ServingConfig(detector="haar", tta="none", device="cpu"))
    assert [row["face_index"] for row in found.rows] == [0, 1] and found.crops.shape == (2, 48, 48)
    assert len(haar.rows) == 2
    yunet = ServingConfig(detector="yunet")
    assert isinstance(serving.shared_detector(yunet), YuNetDetector)
    aligned = find_request_faces([{"image": b64(photo)}], ServingConfig(detector="yunet", align=True, device="cpu"))
    assert serving.face_finder(ServingConfig(detector="yunet", align=True)).align
    assert [row["x"] for row in aligned.rows] == [row["x"] for row in found.rows]  # the same faces,
    assert not np.array_equal(aligned.crops, found.crops)  # cropped aligned
    assert serving.shared_detector(yunet) is serving.shared_detector(ServingConfig(detector="yunet", tta="flip"))
    assert serving.shared_detector(yunet) is not serving.shared_detector(ServingConfig(detector="haar"))
    assert serving.shared_detector(ServingConfig()) is serving.shared_detector(yunet)  # the default
    single = serving.shared_detector(ServingConfig(detect_retry_max_side=0))
    assert single is not serving.shared_detector(yunet) and single.retry_max_side is None


def test_the_answer_carries_yunets_score_and_landmarks_and_null_for_haar(photo, model_file):
    """Each face of the served answer has ``score`` and ``landmarks`` {name: [x, y]} (the person's
    own sides) with YuNet, null with Haar, for a given crop and for an input without a face;
    the answer stays strict JSON, as MLflow's scoring server writes it."""
    from mlflow.pyfunc.scoring_server import predictions_to_json

    from fer_pipeline.core.faces.detector import LANDMARKS
    from tests.core.photo_files import assert_frontal_landmarks

    blank = jpeg(np.full((240, 320, 3), 128, np.uint8))
    rows = [{"image": b64(photo)}, {"pixels": draw_face(0, np.random.default_rng(1)).tolist()}, {"image": b64(blank)}]
    answers = {}
    for kind in ("yunet", "haar"):
        config = ServingConfig(detector=kind, tta="none", device="cpu")
        answer = classify_request_faces(find_request_faces(rows, config), model_file, config)
        assert list(answer.columns)[-2:] == ["score", "landmarks"] == output_columns(CLASSES)[-2:]
        served = io.StringIO()
        predictions_to_json(answer, served)
        answers[kind] = json.loads(served.getvalue())["predictions"]
    detected = [row for row in answers["yunet"] if row["box_source"] == "detector"]
    assert len(detected) == 2
    for row in detected:
        assert 0.7 <= row["score"] <= 1.0 and list(row["landmarks"]) == list(LANDMARKS)
        assert all(len(point) == 2 for point in row["landmarks"].values())
        assert_frontal_landmarks((row["x"], row["y"], row["w"], row["h"]), row["landmarks"])
    others = [row for row in answers["yunet"] if row["box_source"] != "detector"]
    assert [row["status"] for row in others] == ["face", "no_face"]  # the crop, the blank photo
    assert len(answers["haar"]) == 4 and [list(row)[-2:] for row in answers["haar"]] == [["score", "landmarks"]] * 4
    assert all(row["score"] is None and row["landmarks"] is None for row in [*others, *answers["haar"]])


def test_serving_backend_onnxruntime_answers_as_torch_does(photo, tmp_path):
    """serving.backend onnxruntime: the model converted once when it loads; the same answer."""
    from fer_pipeline.core.onnx_model import OnnxModel
    from tests.core.onnx_files import small_model

    model, config = small_model()
    path = save_model(tmp_path / "model.pt", model, config)
    rows = [{"image": b64(photo)}, {"pixels": draw_face(0, np.random.default_rng(1)).tolist()}]
    onnx_config = ServingConfig(device="cpu", backend="onnxruntime", tta="flip")
    by_onnx = classify_request_faces(find_request_faces(rows, onnx_config), path, onnx_config)
    assert isinstance(cached_model(path, "cpu", "onnxruntime").model, OnnxModel)
    torch_config = ServingConfig(device="cpu", tta="flip", amp="off")
    by_torch = classify_request_faces(find_request_faces(rows, torch_config), path, torch_config)
    probabilities = [f"prob_{c}" for c in CLASSES]
    assert len(by_onnx) == 3
    assert by_onnx.drop(columns=probabilities + ["confidence"]).equals(
        by_torch.drop(columns=probabilities + ["confidence"]))
    np.testing.assert_allclose(by_onnx[probabilities].to_numpy(float), by_torch[probabilities].to_numpy(float),
                               atol=1e-5)
    with pytest.raises(ValueError, match="serving.backend must be one of torch, onnxruntime"):
        ServingConfig(backend="ort")
    with pytest.raises(ValueError, match="serving.device must be auto or cpu with it"):
        ServingConfig(backend="onnxruntime", device="cuda")


def test_a_conversion_that_fails_is_not_redone_for_each_request(tmp_path, monkeypatch):
    """The error of a model the onnxruntime back-end cannot take comes back at once on the next
    request, a fresh error object each time (requests run in threads); a new version of the file
    is tried again, and so is a conversion that ran out of memory."""
    from fer_pipeline.core import onnx_export
    from fer_pipeline.core.onnx_export import OnnxExportError
    from tests.core.onnx_files import small_model

    model, config = small_model()
    path = save_model(tmp_path / "model.pt", model, config)
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OnnxExportError("the ONNX export of the model does not agree with PyTorch")

    monkeypatch.setattr(onnx_export, "onnx_model_from_module", refuse)
    errors = []
    for _ in range(3):
        with pytest.raises(OnnxExportError, match="does not agree with PyTorch") as raised:
            cached_model(path, "cpu", "onnxruntime")
        errors.append(raised.value)
    assert len(calls) == 1 and len({id(error) for error in errors}) == 3
    assert isinstance(cached_model(path, "cpu", "torch").model, torch.nn.Module)  # torch still takes it
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a new version of the file

    def out_of_memory(*args, **kwargs):
        calls.append(args)
        raise MemoryError

    monkeypatch.setattr(onnx_export, "onnx_model_from_module", out_of_memory)
    for _ in range(2):
        with pytest.raises(MemoryError):
            cached_model(path, "cpu", "onnxruntime")
    assert len(calls) == 3  # each request tried it
    monkeypatch.undo()
    assert cached_model(path, "cpu", "onnxruntime").model is not None and len(calls) == 3
