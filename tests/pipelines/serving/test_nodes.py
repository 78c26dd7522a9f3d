"""Serving nodes: a request's faces found and classified; a bad request refused as MLflow's 400."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, ErrorCode

from fer_pipeline.core.models import build_resnet34, model_config, save_model
from fer_pipeline.demo import draw_face, draw_photo
from fer_pipeline.kedro_glue.datasets import ModelFile
from fer_pipeline.pipelines.serving.nodes import classify_request_faces, find_request_faces
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PARAMS = {**yaml.safe_load((REPO / "conf/base/parameters_serving.yml").read_text())["serving"], "device": "cpu"}


def _b64_jpeg(image: np.ndarray) -> str:
    return base64.b64encode(cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()).decode()


def test_a_request_to_a_table_of_faces(tmp_path):
    torch.manual_seed(0)
    model = save_model(tmp_path / "resnet34.pt", build_resnet34(arch="resnet18", stem="imagenet"),
                       model_config(arch="resnet18", stem="imagenet"))
    photo = draw_photo([(3, (60, 90, 130, 150)), (5, (290, 80, 120, 140))], rng=np.random.default_rng(1))
    requests = pd.DataFrame([{"image": _b64_jpeg(photo)}, {"pixels": draw_face(1, np.random.default_rng(0)).tolist()}])
    faces = find_request_faces(requests, PARAMS)
    table = classify_request_faces(faces, ModelFile(model), PARAMS)
    assert list(zip(table["input_index"], table["box_source"])) == [(0, "detector"), (0, "detector"), (1, "crop")]


def test_a_bad_request_is_an_mlflow_invalid_parameter_value_with_the_reason():
    """The scoring server answers MlflowException with its code's status (400) and its message."""
    with pytest.raises(MlflowException) as refused:
        find_request_faces(pd.DataFrame([{"pixels": [[1, 2], [3, 4]]}]), PARAMS)
    assert refused.value.error_code == ErrorCode.Name(INVALID_PARAMETER_VALUE)
    assert refused.value.get_http_status_code() == 400
    assert "row 0: pixels must be a 48x48 grey face, got shape (2, 2)" in refused.value.message


def test_unknown_serving_parameters_are_refused():
    with pytest.raises(ValueError, match="did you mean 'margin'"):
        find_request_faces(pd.DataFrame([{"image": "x"}]), {**PARAMS, "margn": 0.1})


def test_a_missing_model_says_how_to_get_one(tmp_path):
    faces = find_request_faces(pd.DataFrame([{"pixels": np.zeros((48, 48), int).tolist()}]), PARAMS)
    with pytest.raises(FileNotFoundError, match="No trained model at"):
        classify_request_faces(faces, ModelFile(tmp_path / "absent.pt"), PARAMS)
