"""Autoencoder stage: class-weighted reconstruction and latent-space minority oversampling."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from fer_pipeline import plots
from fer_pipeline.core.autoencoder import oversampling, training
from fer_pipeline.core.autoencoder.network import autoencoder_bundle
from fer_pipeline.core.ingestion.dataset import class_names, train_split
from fer_pipeline.kedro_glue.datasets import ModelFile
from fer_pipeline.kedro_glue.tracking import metric_history, point_metrics, set_tags

log = logging.getLogger(__name__)


def train_autoencoder(
    fer_dataset: dict[str, np.ndarray], params: dict[str, Any]
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, list[dict]], Any]:
    """Train on the train split only; optionally an unweighted twin for the error table."""
    run = training.train_autoencoder(fer_dataset, params, progress=True)
    set_tags({f"autoencoder.{key}": value for key, value in run.device_info.items()})
    metrics = metric_history(run.history, "autoencoder")
    if run.peak_memory_mb is not None:  # CUDA only: the weighted model's training, not the twin's
        metrics["autoencoder.peak_memory_mb"] = [{"value": run.peak_memory_mb, "step": 0}]
    table = pd.DataFrame(run.errors)
    if run.twin_history is not None:
        metrics.update(metric_history(run.twin_history, "autoencoder_unweighted"))
        log.info("Reconstruction MSE per class, weighted vs unweighted:\n%s", table.to_string(index=False))
    images, labels = train_split(fer_dataset)
    grid = plots.reconstruction_grid(run.model, images, labels, class_names(fer_dataset), per_class=8,
                                     seed=run.config.seed)
    return autoencoder_bundle(run.model), table, metrics, grid


def oversample_minorities(
    fer_dataset: dict[str, np.ndarray], autoencoder_model: ModelFile, params: dict[str, Any]
) -> tuple[dict[str, np.ndarray], Any, dict[str, float]]:
    """Latent SMOTE on the train split: synthetic faces for every class below the target."""
    synthetic, info = oversampling.oversample(fer_dataset, autoencoder_model.path, params)
    metrics = {f"autoencoder.synthetic.{name}": float(n) for name, n in info["added"].items()}
    grid = plots.samples_grid(
        synthetic["images"], synthetic["labels"], class_names(fer_dataset), per_class=8,
        seed=params["oversampling"]["seed"], title="Latent-SMOTE synthetic faces (train split only)",
    )
    return synthetic, grid, point_metrics(metrics)
