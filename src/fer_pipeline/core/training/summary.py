"""What a training run came to, one record for the training node (``training_summary.json``),
``fer-train`` (``<model>_summary.json``) and the runner without Kedro (``metrics.json``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fer_pipeline.core.training.config import TrainResult


def training_summary(result: TrainResult, training_set: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The best epoch and its val metrics, how the run went (epochs, resumption, early stop, time)
    and what it trained on (faces, synthetic faces, device, the training parameters as run)."""
    synthetic = training_set.get("synthetic")
    return {
        "best_epoch": result.best_epoch,
        "best_val_metrics": result.best_metrics,
        "select_metric": result.train_config["select_metric"],
        "epochs_run": len(result.history),
        "resumed_from_epoch": result.resumed_from_epoch,
        "stopped_early": result.stopped_early,
        "train_images": int(len(training_set["labels"])),
        "synthetic_images": int(np.sum(synthetic)) if synthetic is not None else 0,
        "device": result.device_info,
        "train_config": result.train_config,
        "epoch_seconds_total": float(sum(row.get("epoch_seconds", 0.0) for row in result.history)),
    }
