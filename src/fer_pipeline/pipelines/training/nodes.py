"""Training stage: ResNet34 on the assembled training set, selected on the validation split."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from fer_pipeline.core.train import TrainConfig, plot_training_curves, train_classifier
from fer_pipeline.pipelines.tracking import active_run_id, metric_history, set_tags

log = logging.getLogger(__name__)


def train_resnet(
    training_set: dict[str, np.ndarray],
    fer_dataset: dict[str, np.ndarray],
    training_params: dict[str, Any],
    augmentation_params: dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any], Any, dict[str, list[dict]]]:
    """Train, keep the best epoch by the validation metric; the test split is never touched here."""
    classes = [str(c) for c in fer_dataset["classes"]]
    val = fer_dataset["splits"] == "val"
    if not val.any():
        raise ValueError("the dataset has no validation split: model selection needs one")
    train_cfg = TrainConfig.from_dict({**training_params["config"], "sampler": augmentation_params["sampler"]})
    model_cfg = {**training_params["model"], "num_classes": len(classes)}
    counts = np.bincount(training_set["labels"], minlength=len(classes))

    result = train_classifier(
        training_set["images"], training_set["labels"],
        fer_dataset["images"][val], fer_dataset["labels"][val],
        counts, model_cfg, train_cfg, augmentation_params["policy"], progress=True,
    )
    config = dict(result.config)
    config["classes"] = classes
    # Lets `kedro run --pipeline evaluate` link its MLflow run to the one that trained the model.
    config["mlflow_run_id"] = active_run_id()
    bundle = {"config": config, "state_dict": result.model.state_dict()}

    history = pd.DataFrame(result.history)
    summary = {
        "best_epoch": result.best_epoch,
        "best_val_metrics": result.best_metrics,
        "select_metric": train_cfg.select_metric,
        "epochs_run": len(result.history),
        "train_images": int(len(training_set["labels"])),
        "synthetic_images": int(training_set["synthetic"].sum()),
        "device": result.device_info,
        "total_seconds": float(history["epoch_seconds"].sum()) if "epoch_seconds" in history else None,
        "mlflow_run_id": config["mlflow_run_id"],
    }
    metrics = metric_history(result.history, "train")
    for key, value in (result.best_metrics or {}).items():
        if isinstance(value, (int, float)):
            metrics[f"best.{key}"] = [{"value": float(value), "step": int(result.best_epoch)}]
    for key, value in result.device_info.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[f"device.{key}"] = [{"value": float(value), "step": 0}]
    set_tags({f"training.{key}": value for key, value in result.device_info.items()})
    log.info("Best epoch %s: %s", result.best_epoch, result.best_metrics)
    return bundle, history, summary, plot_training_curves(result.history), metrics
