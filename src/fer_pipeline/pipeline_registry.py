"""Project pipelines: every folder under ``pipelines/`` is one, and ``__default__`` runs the stages.

``serving`` is not a stage of a run: it is the inference pipeline that every run which trains
the classifier (``__default__`` and ``training``) logs as the MLflow model ``emotion_model``
(kedro-mlflow's ``pipeline_ml_factory``; ``pipelines/serving/model.py``). Its input is a
request, which only a served or loaded model receives.
"""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from fer_pipeline.pipelines.serving import create_pipeline as create_serving_pipeline
from fer_pipeline.pipelines.serving.model import logs_served_model

SERVING = "serving"


def register_pipelines() -> dict[str, Pipeline]:
    # Kedro finds only the pipelines a command asks for (`--pipeline training` loads `training`
    # alone), so the serving pipeline is built here, whichever were found.
    pipelines = find_pipelines(raise_errors=True)
    serving = create_serving_pipeline()
    if "__default__" in pipelines:
        stages = [pipe for name, pipe in pipelines.items() if name not in ("__default__", SERVING)]
        pipelines["__default__"] = logs_served_model(sum(stages, Pipeline([])), serving)
    if "training" in pipelines:
        pipelines["training"] = logs_served_model(pipelines["training"], serving)
    return pipelines
