"""Project pipelines: every folder under ``pipelines/`` is one, and ``__default__`` runs the stages.

``serving`` is not a stage of a run: it is the inference pipeline that every run which trains
the classifier (``__default__``, and ``training``, which also runs ``package_model``) logs as the
MLflow model ``emotion_model`` (kedro-mlflow's ``PipelineML``; ``kedro_glue/served_model.py``).
Its input is a request, which only a served or loaded model receives. ``package_model`` alone
logs the model file on disk the same way, without training.
"""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from fer_pipeline.kedro_glue.served_model import logs_served_model, packages_served_model
from fer_pipeline.pipelines.package_model import create_pipeline as create_package_pipeline
from fer_pipeline.pipelines.serving import create_pipeline as create_serving_pipeline

SERVING = "serving"
PACKAGE = "package_model"


def register_pipelines() -> dict[str, Pipeline]:
    # Kedro finds only the pipelines a command asks for (`--pipelines training` loads `training`
    # alone), so the serving and packaging pipelines are built here, whichever were found.
    pipelines = find_pipelines(raise_errors=True)
    serving = create_serving_pipeline()
    if "__default__" in pipelines:
        stages = [pipe for name, pipe in pipelines.items() if name not in ("__default__", SERVING)]
        pipelines["__default__"] = logs_served_model(sum(stages, Pipeline([])), serving)
    if "training" in pipelines:
        pipelines["training"] = logs_served_model(pipelines["training"] + create_package_pipeline(), serving)
    if PACKAGE in pipelines:
        pipelines[PACKAGE] = packages_served_model(pipelines[PACKAGE], serving)
    return pipelines
