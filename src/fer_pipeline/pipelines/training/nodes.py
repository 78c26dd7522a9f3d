"""Training stage: ResNet34 on the assembled training set, selected on the validation split, and
its ONNX export."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from fer_pipeline import plots
from fer_pipeline.core.models import load_model, model_bundle
from fer_pipeline.core.onnx_export import convert, dataset_faces
from fer_pipeline.core.training import job
from fer_pipeline.core.training.summary import training_summary
from fer_pipeline.kedro_glue.datasets import ModelFile
from fer_pipeline.kedro_glue.tracking import active_run_id, metric_history, point_metrics, set_tags

log = logging.getLogger(__name__)


def train_resnet(
    training_set: dict[str, np.ndarray],
    fer_dataset: dict[str, np.ndarray],
    training_params: dict[str, Any],
    augmentation_params: dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any], Any, dict[str, list[dict]]]:
    """Train, keep the best epoch by the validation metric; the test split is never touched here."""
    result = job.train_resnet(training_set, fer_dataset, training_params, augmentation_params, progress=True)
    # Lets `kedro run --pipelines evaluate` link its MLflow run to the one that trained the model.
    config = {**result.config, "mlflow_run_id": active_run_id()}
    history = pd.DataFrame(result.history)
    summary = {**training_summary(result, training_set), "mlflow_run_id": config["mlflow_run_id"]}
    metrics = metric_history(result.history, "train")
    for key, value in (result.best_metrics or {}).items():
        if isinstance(value, (int, float)):
            metrics[f"best.{key}"] = [{"value": float(value), "step": int(result.best_epoch)}]
    for key, value in result.device_info.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[f"device.{key}"] = [{"value": float(value), "step": 0}]
    set_tags({f"training.{key}": value for key, value in result.device_info.items()})
    log.info("Best epoch %s: %s", result.best_epoch, result.best_metrics)
    return model_bundle(result.model, config), history, summary, plots.plot_training_curves(result.history), metrics


def export_onnx(resnet_model: ModelFile, fer_dataset: dict[str, np.ndarray]) -> tuple[bytes, dict[str, dict]]:
    """The trained model as ONNX (``core.onnx_export``), checked against PyTorch on validation faces
    of the dataset it was trained on; a model that disagrees stops the run (``OnnxExportError``) and
    is not written. Its metrics: the faces, the largest logit difference, the top-1 agreement."""
    model, config = load_model(resnet_model.require())
    data, _, agreement = convert(model, config, dataset_faces(fer_dataset), source=str(resnet_model.path))
    log.info("ONNX export agrees with PyTorch on %d validation faces: largest logit difference %.2g, "
             "top-1 agreement %.2f%%", agreement.faces, agreement.max_abs_diff, 100 * agreement.top1_agreement)
    return data, point_metrics(agreement.metrics())
