"""Tests for core.onnx_export: the export agrees with PyTorch face by face, records the model's
preprocessing, takes any batch size, and is refused (nothing written) when it disagrees."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fer_pipeline.core import onnx_export
from fer_pipeline.core.faces.recognizer import EmotionRecognizer
from fer_pipeline.core.models import load_model
from fer_pipeline.core.onnx_export import (
    Agreement,
    OnnxExportError,
    convert,
    dataset_faces,
    export_onnx,
    onnx_bytes,
    spread,
    synthetic_faces,
)
from fer_pipeline.core.onnx_model import CONFIG_KEY, load_onnx_model
from tests.core.onnx_files import TRAINING_DATA, small_model, small_model_files

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return small_model_files(tmp_path_factory.mktemp("onnx"))


@pytest.mark.parametrize("tta", ["none", "flip", "ten_crop"])
def test_both_backends_give_the_same_probabilities_face_by_face(files, tta):
    pt, onnx = files
    faces = synthetic_faces(24, seed=3)
    torch_probs = EmotionRecognizer.load(pt, tta=tta, device="cpu", amp="off").classify_crops(faces)
    onnx_recognizer = EmotionRecognizer.load(onnx, tta=tta)
    assert onnx_recognizer.backend == "onnxruntime"
    onnx_probs = onnx_recognizer.classify_crops(faces)
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-5)
    assert (onnx_probs.argmax(1) == torch_probs.argmax(1)).all()


def test_the_file_records_the_models_config_and_readable_preprocessing(files):
    pt, onnx = files
    _, config = load_model(pt)
    model = load_onnx_model(onnx)
    assert model.config == config  # training data identity, stem, classes, normalisation...
    fields = model.session.get_modelmeta().custom_metadata_map
    assert json.loads(fields[CONFIG_KEY])["training_data"] == TRAINING_DATA
    assert (fields["input_size"], fields["in_channels"], fields["stem"]) == ("44", "1", "imagenet")
    assert (json.loads(fields["mean"]), json.loads(fields["std"])) == (0.5, 0.25)
    assert json.loads(fields["classes"]) == config["classes"]
    assert fields["training_dataset_id"] == TRAINING_DATA["dataset_id"]
    assert "(x - mean) / std" in fields["preprocessing"]


def test_the_batch_axis_is_dynamic(files):
    model = load_onnx_model(files[1])
    faces = np.resize(synthetic_faces(20), (300, 48, 48))
    for batch in (1, 5, 300):  # 300 with batch_size 256: two calls of different sizes
        assert model.predict_logits(faces[:batch]).shape == (batch, 7)


def test_a_disagreeing_export_is_refused_and_nothing_is_written(monkeypatch, tmp_path):
    model, config = small_model(seed=0)
    other, _ = small_model(seed=1)
    tampered = onnx_bytes(other, config)  # another model's weights where this one's should be
    monkeypatch.setattr(onnx_export, "onnx_bytes", lambda *args: tampered)
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the previous export")
    with pytest.raises(OnnxExportError, match="does not agree with PyTorch on 16 faces: logits differ by up to"):
        export_onnx(model, config, out, synthetic_faces(16), source="model.pt")
    assert out.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temp file left


def test_the_tolerance_and_agreement_limits():
    assert Agreement(100, 1e-6, 1.0).problems() == []
    assert Agreement(100, float("nan"), 1.0).problems() != []
    assert "top-1 class agrees on 99.00% of 100 faces, 1 of them flipped" in \
        Agreement(100, 1e-6, 0.99, flip_margins=(0.5,)).problems()[0]
    # a face PyTorch itself cannot tell between two classes (margin under the tolerance) may flip
    assert Agreement(100, 1e-6, 0.99, flip_margins=(1e-4,)).problems() == []
    assert Agreement(100, 1e-6, 0.98, flip_margins=(1e-4, 0.5)).problems() != []
    assert Agreement(100, 2e-3, 1.0).problems(tolerance=1e-2) == []
    assert Agreement(100, 2e-3, 1.0, logit_scale=0.5).problems() != []
    assert Agreement(100, 2e-3, 1.0, logit_scale=40.0).problems() == []  # rounding grows with the logits
    assert Agreement(4, 1e-6, 1.0, 3.0, (0.1,)).metrics() == {"onnx.faces": 4.0, "onnx.max_abs_diff": 1e-6,
                                                      "onnx.top1_agreement": 1.0, "onnx.logit_scale": 3.0}


def test_convert_reports_the_agreement_it_checked():
    model, config = small_model()
    _, onnx_model, agreement = convert(model, config, synthetic_faces(8))
    assert agreement.faces == 8 and agreement.top1_agreement == 1.0 and agreement.max_abs_diff < 1e-4
    assert onnx_model.config == config


def test_check_faces_come_from_the_validation_split_spread_over_it():
    images = np.arange(10, dtype=np.uint8)[:, None, None].repeat(48, 1).repeat(48, 2)
    splits = np.array(["train"] * 4 + ["val"] * 4 + ["test"] * 2)
    picked = dataset_faces({"images": images, "splits": splits}, count=2)
    assert picked[:, 0, 0].tolist() == [4, 7]
    assert len(dataset_faces({"images": images}, count=100)) == 10
    assert spread(0, 5).tolist() == [] and spread(3, 10).tolist() == [0, 1, 2]
