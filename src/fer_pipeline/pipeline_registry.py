"""Project pipelines: every folder under ``pipelines/`` is one, and ``__default__`` runs the stages.

``serving`` is not a stage of a run: it is the inference pipeline that every run which trains
the classifier (``__default__``, and ``training``, which also runs ``package_model``) logs as the
MLflow model ``emotion_model`` (kedro-mlflow's ``PipelineML``; ``kedro_glue/served_model.py``).
Its input is a request, which only a served or loaded model receives. ``package_model`` alone
logs the model file on disk the same way, without training.

Every other pipeline is a namespace of its own name (``training.train_resnet``), which kedro-viz
draws as one collapsible box per stage. The namespace groups the nodes only: dataset and
parameter names stay those of ``conf/`` (``prefix_datasets_with_namespace=False``).
"""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline, pipeline

from fer_pipeline.kedro_glue.served_model import logs_served_model, packages_served_model
from fer_pipeline.pipelines.package_model import create_pipeline as create_package_pipeline
from fer_pipeline.pipelines.serving import create_pipeline as create_serving_pipeline

SERVING = "serving"
PACKAGE = "package_model"


def register_pipelines() -> dict[str, Pipeline]:
    # Kedro finds only the pipelines a command asks for (`--pipelines training` loads `training`
    # alone), so the serving and packaging pipelines are built here, whichever were found.
    pipelines = {name: pipe if name in ("__default__", SERVING) else grouped(name, pipe)
                 for name, pipe in find_pipelines(raise_errors=True).items()}
    serving = create_serving_pipeline()
    if "__default__" in pipelines:
        stages = [pipe for name, pipe in pipelines.items() if name not in ("__default__", SERVING)]
        pipelines["__default__"] = logs_served_model(sum(stages, Pipeline([])), serving)
    if "training" in pipelines:
        package = grouped(PACKAGE, create_package_pipeline())
        pipelines["training"] = logs_served_model(pipelines["training"] + package, serving)
    if PACKAGE in pipelines:
        pipelines[PACKAGE] = packages_served_model(pipelines[PACKAGE], serving)
    return pipelines


def grouped(name: str, stage: Pipeline) -> Pipeline:
    """``stage`` with its nodes in namespace ``name``, its datasets' names unchanged."""
    return pipeline(stage, namespace=name, prefix_datasets_with_namespace=False)
