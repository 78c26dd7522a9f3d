"""Package-model node: the card of the model to serve, and serving parameters checked before logging."""

from __future__ import annotations

import hashlib

import pytest
import torch
import yaml

from fer_pipeline.core.models import build_resnet34, model_config, save_model
from fer_pipeline.kedro_glue.datasets import ModelFile
from fer_pipeline.pipelines.package_model.nodes import describe_served_model
from tests.conftest import REPO

PARAMS = yaml.safe_load((REPO / "conf/base/parameters_serving.yml").read_text())["serving"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    config = {**model_config(arch="resnet18", stem="imagenet"), "mlflow_run_id": "abc123",
              "training_data": {"dataset_id": "d1", "split_sizes": {"train": 3, "val": 1, "test": 1}}}
    return save_model(tmp_path_factory.mktemp("model") / "resnet34.pt", build_resnet34(arch="resnet18", stem="imagenet"),
                      config)


def test_the_card_names_the_weights_their_training_and_the_serving_parameters(model_file):
    card = describe_served_model(ModelFile(model_file), PARAMS)
    assert card["model"] == "emotion_model"
    assert card["weights"]["sha256"] == hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert card["weights"]["bytes"] == model_file.stat().st_size
    assert card["architecture"]["arch"] == "resnet18" and card["architecture"]["stem"] == "imagenet"
    assert card["architecture"]["classes"] == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert card["trained_in_mlflow_run"] == "abc123" and card["training_data"]["dataset_id"] == "d1"
    assert card["serving"] == PARAMS


def test_a_typo_in_the_serving_parameters_stops_the_run_before_the_model_is_logged(model_file):
    with pytest.raises(ValueError, match=r"'max_input' \(did you mean 'max_inputs'\?\)"):
        describe_served_model(ModelFile(model_file), {**PARAMS, "max_input": 3})


def test_no_model_says_how_to_get_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="No trained model at"):
        describe_served_model(ModelFile(tmp_path / "absent.pt"), PARAMS)
