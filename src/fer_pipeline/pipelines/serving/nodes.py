"""Serving stage: a request's photos and crops -> faces -> emotions, inside the MLflow model.

These nodes run in the MLflow scoring server (``mlflow models serve``) and in
``mlflow.pyfunc.load_model(...).predict``, through kedro-mlflow's ``KedroPipelineModel``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from fer_pipeline.core.serving import requests as serving
from fer_pipeline.kedro_glue.datasets import ModelFile


def _bad_request(error: serving.ServingInputError) -> Exception:
    """The scoring server answers an ``MlflowException`` with its error code's HTTP status
    (INVALID_PARAMETER_VALUE: 400) and its message; any other exception becomes a 400 with a
    generic message and a traceback, which would hide what was wrong with the request."""
    from mlflow.exceptions import MlflowException

    return MlflowException.invalid_parameter_value(str(error))


def find_request_faces(serving_requests: pd.DataFrame, params: dict[str, Any]) -> serving.RequestFaces:
    """Decode each input and find its faces; a request with a bad input is refused, every bad row named."""
    try:
        return serving.find_request_faces(serving_requests, serving.ServingConfig.from_params(params))
    except serving.ServingInputError as error:
        raise _bad_request(error) from error


def classify_request_faces(
    request_faces: serving.RequestFaces, resnet_model: ModelFile, params: dict[str, Any]
) -> pd.DataFrame:
    """One row per face (box, emotion, the seven probabilities), one per input without a face."""
    return serving.classify_request_faces(
        request_faces, resnet_model.require(), serving.ServingConfig.from_params(params)
    )
