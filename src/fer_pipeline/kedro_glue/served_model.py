"""The served model: the serving pipeline bound to training as a kedro-mlflow ``PipelineML``.

Every run of a pipeline that trains the classifier (``kedro run``, ``kedro run --pipelines
training``) then logs one MLflow model, ``emotion_model``: the serving pipeline with the model
file it trained and ``params:serving`` as artifacts, so the preprocessing the model was trained
with travels with it; ``kedro run --pipelines package_model`` logs the model file on disk the same
way without training. ``mlflow models serve -m runs:/<run id>/emotion_model`` serves it, and
``mlflow.pyfunc.load_model`` loads it; both need this package installed (``--env-manager local``
in the project's environment).
"""

from __future__ import annotations

import dataclasses
from importlib import metadata
from pathlib import Path
from typing import Any

from kedro.pipeline import Pipeline
from kedro_mlflow.pipeline import pipeline_ml_factory
from kedro_mlflow.pipeline.pipeline_ml import PipelineML
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, Array, ColSpec, DataType, Object, Property, Schema

from fer_pipeline.core.classes import CLASSES, CONTEMPT
from fer_pipeline.core.faces.detector import LANDMARKS
from fer_pipeline.core.serving.requests import ServingConfig

#: The model's name in the run (``runs:/<run id>/emotion_model``).
MODEL_NAME = "emotion_model"
#: The serving pipeline's input: the request table.
INPUT_NAME = "serving_requests"

#: The distributions the model runs with; their installed versions are logged as its requirements.
REQUIREMENTS = ("fer_pipeline", "torch", "torchvision", "onnx", "onnxruntime", "numpy", "pandas", "pillow",
                "opencv-python-headless", "scikit-learn", "kedro", "kedro-datasets", "kedro-mlflow", "mlflow",
                "cloudpickle")


#: Every class a served model can have: the 7, and FER+'s contempt (``ingestion.ferplus_contempt:
#: class``). The signature is fixed when the pipelines are registered, before a model exists, so it
#: lists them all; each ``prob_<class>`` is optional, and a model answers with its own classes.
SIGNATURE_CLASSES: tuple[str, ...] = (*CLASSES, CONTEMPT)


def signature(classes: tuple[str, ...] = SIGNATURE_CLASSES) -> ModelSignature:
    """What the model takes (``image`` or ``pixels`` per row, see ``core.serving``) and returns.

    ``pixels`` is declared ``Any`` on purpose: with an array type, MLflow's schema enforcement
    refuses a ``dataframe_records`` request that mixes image rows and pixel rows (it cannot skip
    the missing cell), and answers a wrongly shaped array with a type error instead of the shape;
    ``core.serving.crop_from_pixels`` checks it and names the problem. A face's ``score`` and
    ``landmarks`` ({name: [x, y]}, ``LANDMARKS``) are the detector's, null with Haar.
    """
    inputs = Schema([ColSpec(DataType.string, "image", required=False), ColSpec(AnyType(), "pixels", required=False)])
    outputs = Schema([
        ColSpec(DataType.long, "input_index"),
        ColSpec(DataType.string, "status"),
        *[ColSpec(DataType.long, name, required=False) for name in ("face_index", "x", "y", "w", "h")],
        ColSpec(DataType.string, "box_source", required=False),
        ColSpec(DataType.string, "emotion", required=False),
        ColSpec(DataType.double, "confidence", required=False),
        *[ColSpec(DataType.double, f"prob_{name}", required=False) for name in classes],
        ColSpec(DataType.double, "score", required=False),
        ColSpec(Object([Property(name, Array(DataType.double)) for name in LANDMARKS]), "landmarks", required=False),
    ])
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example():  # -> pandas.DataFrame
    """One grey 48x48 crop as ``pixels``: saved with the model (``serving_input_example.json``,
    shown by the MLflow UI), small where a photo would be megabytes of base64."""
    import numpy as np
    import pandas as pd

    from fer_pipeline.core.classes import IMAGE_SIZE

    return pd.DataFrame([{"pixels": np.full((IMAGE_SIZE, IMAGE_SIZE), 128, dtype=np.int64).tolist()}])


def pip_requirements() -> list[str]:
    """``name==version`` of each of ``REQUIREMENTS`` that is installed. ``fer_pipeline`` is not on
    PyPI: an environment that serves the model must have this project installed."""
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


class TrainingPipelineML(PipelineML):
    """kedro-mlflow's ``PipelineML`` (what ``pipeline_ml_factory`` builds) whose filtered copies
    (``kedro run --nodes/--from-nodes/--to-nodes/--tags``) stay one only while they still write
    what the inference pipeline needs from training. A run that does not train logs no model:
    as a ``PipelineML``, ``kedro run --to-nodes ingestion.ingest_faces`` would stop with "free input
    resnet_model" before running anything."""

    def _turn_pipeline_to_ml(self, pipeline: Pipeline) -> Pipeline:
        needs = {name for name in self.inference.inputs() - {self.input_name} if not name.startswith("params:")}
        if not needs <= pipeline.all_outputs():
            return Pipeline(pipeline.nodes)
        return TrainingPipelineML(pipeline.nodes, inference=self.inference, input_name=self.input_name,
                                  kpm_kwargs=self.kpm_kwargs, log_model_kwargs=self.log_model_kwargs)


def log_model_kwargs() -> dict:
    """What kedro-mlflow passes to ``mlflow.pyfunc.log_model`` for ``MODEL_NAME``."""
    return {
        "name": MODEL_NAME,
        "signature": signature(),
        # Given, so MLflow does not load the model in a subprocess to guess them.
        "pip_requirements": pip_requirements(),
        "input_example": input_example(),
    }


def logs_served_model(training: Pipeline, inference: Pipeline) -> Pipeline:
    """``training`` as a ``TrainingPipelineML``: a run of it logs ``inference`` (the serving
    pipeline) with what training wrote, as the MLflow model ``MODEL_NAME``."""
    return TrainingPipelineML(training.nodes, inference=inference, input_name=INPUT_NAME,
                              log_model_kwargs=log_model_kwargs())


def packages_served_model(package: Pipeline, inference: Pipeline) -> Pipeline:
    """``package`` (which reads the model file, not writes it) as kedro-mlflow's ``PipelineML``:
    a run of it logs ``inference`` with the model file on disk as ``MODEL_NAME``."""
    return pipeline_ml_factory(training=package, inference=inference, input_name=INPUT_NAME,
                               log_model_kwargs=log_model_kwargs())


def served_model_card(model_path: Path, model_config: dict[str, Any], serving_params: dict[str, Any]) -> dict[str, Any]:
    """What the logged model holds: the weights file (path, bytes, sha256), the architecture and
    classes, the dataset and MLflow run it was trained in (from the file's ``config``), and the
    serving parameters, checked (``ServingConfig``) so that a typo stops the run instead of every
    request."""
    from fer_pipeline.files import file_info

    serving = ServingConfig.from_params(serving_params)
    architecture = ("arch", "stem", "in_channels", "num_classes", "input_size", "classes", "mean", "std")
    return {
        "model": MODEL_NAME,
        "weights": file_info(model_path),
        "architecture": {key: model_config.get(key) for key in architecture},
        "training_data": model_config.get("training_data"),
        "trained_in_mlflow_run": model_config.get("mlflow_run_id"),
        "serving": dataclasses.asdict(serving),
    }
