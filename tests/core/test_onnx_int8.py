"""Tests for core.onnx_int8: the int8 model is calibrated, keeps the float export's metadata, runs
as an ``.onnx`` like any other, and is refused (nothing written) when it has stopped agreeing."""

from __future__ import annotations

import numpy as np
import pytest

from fer_pipeline.core.faces.recognizer import EmotionRecognizer
from fer_pipeline.core.onnx_export import OnnxExportError, export_onnx
from fer_pipeline.core.onnx_int8 import QUANTIZATION_KEY, export_int8, model_inputs, quantize_int8
from fer_pipeline.core.onnx_model import load_onnx_model
from fer_pipeline.demo import draw_face
from tests.core.onnx_files import small_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([draw_face(index % 7, rng) for index in range(40)])


def test_the_int8_model_agrees_keeps_the_metadata_and_is_smaller(faces, tmp_path):
    model, config = small_model()
    check, calibration = faces[:20], faces[20:]
    agreement = export_int8(model, config, tmp_path / "int8.onnx", check, calibration)
    export_onnx(model, config, tmp_path / "float.onnx", check)
    assert agreement.faces == 20 and agreement.top1_agreement >= 0.95 and agreement.max_abs_diff > 0
    int8 = load_onnx_model(tmp_path / "int8.onnx")
    assert int8.config == load_onnx_model(tmp_path / "float.onnx").config
    fields = int8.session.get_modelmeta().custom_metadata_map
    assert "calibrated (min-max) on 20 training faces" in fields[QUANTIZATION_KEY]
    assert (tmp_path / "int8.onnx").stat().st_size < (tmp_path / "float.onnx").stat().st_size / 2
    recognizer = EmotionRecognizer.load(tmp_path / "int8.onnx")
    assert recognizer.backend == "onnxruntime" and recognizer.classify_crops(check).shape == (20, 7)


def test_calibration_sees_what_the_model_sees(faces):
    _, config = small_model()
    inputs = model_inputs(faces[:3], config)
    assert inputs.shape == (3, 1, 44, 44) and inputs.dtype == np.float32  # cropped to the input size
    assert abs(float(inputs.mean()) - (faces[:3].mean() / 255 - 0.5) / 0.25) < 0.2  # normalised (mean 0.5, std 0.25)
    with pytest.raises(ValueError, match="no faces to calibrate"):
        quantize_int8(b"", config, faces[:0])


def test_an_int8_model_that_stopped_agreeing_is_refused_and_nothing_written(faces, tmp_path):
    model, config = small_model()
    (tmp_path / "int8.onnx").write_bytes(b"the previous file")
    with pytest.raises(OnnxExportError, match="the quantisation broke it. Nothing was written"):
        export_int8(model, config, tmp_path / "int8.onnx", faces[:20], faces[20:], min_agreement=1.01)
    assert (tmp_path / "int8.onnx").read_bytes() == b"the previous file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8.onnx"]
