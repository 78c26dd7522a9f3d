"""The served model's definition: its signature, requirements, and which pipelines log it."""

from __future__ import annotations

from importlib import metadata

import pytest
from kedro.framework.project import pipelines
from kedro.framework.startup import bootstrap_project
from kedro.pipeline import Pipeline
from kedro_mlflow.pipeline.pipeline_ml import PipelineML

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.serving.requests import INPUT_COLUMNS, output_columns
from fer_pipeline.kedro_glue.served_model import (
    INPUT_NAME,
    TrainingPipelineML,
    input_example,
    pip_requirements,
    signature,
)
from tests.conftest import REPO


def test_the_signature_names_what_core_serving_takes_and_returns():
    schema = signature()
    assert schema.inputs.input_names() == list(INPUT_COLUMNS)
    assert schema.inputs.required_input_names() == []  # each row fills one of them
    # every class a model can have: FER+'s contempt too (optional, as every probability column)
    assert schema.outputs.input_names() == output_columns((*CLASSES, "contempt"))
    assert schema.outputs.required_input_names() == ["input_index", "status"]  # no_face rows have the rest null


def test_the_signature_declares_the_detectors_score_and_landmarks():
    from fer_pipeline.core.faces.detector import LANDMARKS

    outputs = {spec.name: spec for spec in signature().outputs.inputs}
    assert outputs["score"].type.name == "double"
    landmarks = outputs["landmarks"].type.to_dict()
    assert landmarks["type"] == "object" and sorted(landmarks["properties"]) == sorted(LANDMARKS)
    assert all(prop == {"type": "array", "items": {"type": "double"}, "required": True}
               for prop in landmarks["properties"].values())


def test_requirements_pin_the_installed_versions():
    pins = dict(pin.split("==") for pin in pip_requirements())
    assert pins["torch"] == metadata.version("torch") and pins["kedro-mlflow"] == metadata.version("kedro-mlflow")
    assert pins["fer_pipeline"] == metadata.version("fer_pipeline")
    assert pins["onnxruntime"] == metadata.version("onnxruntime")  # serving.backend onnxruntime needs it


def test_the_input_example_is_one_grey_crop():
    example = input_example()
    assert list(example.columns) == ["pixels"] and len(example) == 1
    assert len(example["pixels"][0]) == 48 and len(example["pixels"][0][0]) == 48


@pytest.fixture(scope="module")
def registered():
    bootstrap_project(REPO)
    pipelines.set_requested(None)
    return dict(pipelines)


def test_the_runs_that_train_or_package_log_the_serving_pipeline_and_only_they(registered):
    for name in ("__default__", "training", "package_model"):
        assert isinstance(registered[name], PipelineML), name
        assert registered[name].inference.outputs() == {"emotion_predictions"}
        assert registered[name].input_name == INPUT_NAME
        assert "package_model.describe_served_model" in {n.name for n in registered[name].nodes}, name  # params checked
    assert type(registered["package_model"]) is PipelineML  # kedro-mlflow's own: it reads the model file
    for name in ("ingestion", "evaluate", "predict", "serving"):
        assert not isinstance(registered[name], PipelineML), name
    serving_nodes = {n.name for n in registered["serving"].nodes}
    assert serving_nodes == {"find_request_faces", "classify_request_faces"}
    assert not serving_nodes & {n.name for n in registered["__default__"].nodes}  # never run by `kedro run`


def test_a_filtered_run_logs_the_model_only_when_it_still_trains(registered):
    default = registered["__default__"]
    assert isinstance(default.filter(node_names=["training.train_resnet"]), TrainingPipelineML)
    assert isinstance(default.filter(to_nodes=["training.train_resnet"]), TrainingPipelineML)
    ingestion_only = default.filter(to_nodes=["ingestion.ingest_faces"])  # kedro-mlflow's own class refused this
    assert type(ingestion_only) is Pipeline and {n.name for n in ingestion_only.nodes} == {
        "ingestion.prepare_source", "ingestion.ingest_faces"}
    assert type(default.filter(node_names=["evaluate.evaluate_model"])) is Pipeline


def test_only_the_requested_pipelines_are_found_and_training_still_logs(registered):
    """`kedro run --pipelines training` makes Kedro find `training` alone; serving is built anyway."""
    bootstrap_project(REPO)
    pipelines.set_requested(["training"])
    try:
        assert isinstance(pipelines["training"], TrainingPipelineML)
    finally:
        pipelines.set_requested(None)
