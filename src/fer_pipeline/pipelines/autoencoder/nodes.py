"""Autoencoder stage: class-weighted reconstruction and latent-space minority oversampling."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import pandas as pd
import torch

from fer_pipeline.core import autoencoder as ae
from fer_pipeline.core.data import resolve_device
from fer_pipeline.datasets import ModelFile
from fer_pipeline.pipelines.tracking import hardware_summary, metric_history, point_metrics, set_tags

log = logging.getLogger(__name__)


def _config(params: dict[str, Any], **overrides) -> ae.AutoencoderConfig:
    names = {f.name for f in dataclasses.fields(ae.AutoencoderConfig)}
    values = {k: v for k, v in params.items() if k in names}
    values.update(overrides)
    return ae.AutoencoderConfig(**values)


def train_autoencoder(
    fer_dataset: dict[str, np.ndarray], params: dict[str, Any]
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, list[dict]], Any]:
    """Train on the train split only; optionally an unweighted twin for the error table."""
    classes = [str(c) for c in fer_dataset["classes"]]
    train = fer_dataset["splits"] == "train"
    images, labels = fer_dataset["images"][train], fer_dataset["labels"][train]

    cfg = _config(params)
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model, history = ae.train_autoencoder(images, labels, cfg, progress=True)
    metrics = metric_history(history, "autoencoder")
    hardware = hardware_summary(device)
    set_tags({f"autoencoder.{key}": value for key, value in hardware.items()})
    if "peak_memory_mb" in hardware:
        metrics["autoencoder.peak_memory_mb"] = [{"value": hardware["peak_memory_mb"], "step": 0}]
    table = pd.DataFrame(ae.per_class_reconstruction_error(model, images, labels, classes, device=cfg.device))
    table = table.rename(columns={"mse": f"mse_{cfg.weighting}", "mae": f"mae_{cfg.weighting}"})

    if params.get("compare_unweighted") and cfg.weighting != "none":
        twin, twin_history = ae.train_autoencoder(images, labels, _config(params, weighting="none"), progress=True)
        metrics.update(metric_history(twin_history, "autoencoder_unweighted"))
        twin_table = pd.DataFrame(ae.per_class_reconstruction_error(twin, images, labels, classes, device=cfg.device))
        table["mse_none"] = twin_table["mse"].values
        table["mae_none"] = twin_table["mae"].values
        table["mse_change_pct"] = 100.0 * (table[f"mse_{cfg.weighting}"] / table["mse_none"] - 1.0)
        log.info("Reconstruction MSE per class, weighted vs unweighted:\n%s", table.to_string(index=False))

    grid = ae.reconstruction_grid(model, images, labels, classes, per_class=8, seed=cfg.seed)
    bundle = {"config": model.config(), "state_dict": model.state_dict()}
    return bundle, table, metrics, grid


def oversample_minorities(
    fer_dataset: dict[str, np.ndarray], autoencoder_model: ModelFile, params: dict[str, Any]
) -> tuple[dict[str, np.ndarray], Any, dict[str, float]]:
    """Latent SMOTE on the train split: synthetic faces for every class below the target."""
    classes = [str(c) for c in fer_dataset["classes"]]
    train = fer_dataset["splits"] == "train"
    images, labels = fer_dataset["images"][train], fer_dataset["labels"][train]
    options = params["oversampling"]
    counts = np.bincount(labels, minlength=len(classes))

    if options.get("enabled", True):
        model = ae.load_autoencoder(autoencoder_model.path)
        targets = ae.oversampling_targets(counts, options["fraction_of_largest"])
        synth_images, synth_labels = ae.latent_smote(
            model, images, labels, targets, k=options["k"], seed=options["seed"], device=params.get("device", "auto")
        )
    else:
        synth_images = np.zeros((0, *images.shape[1:]), dtype=np.uint8)
        synth_labels = np.zeros(0, dtype=np.int64)

    added = np.bincount(synth_labels, minlength=len(classes))
    metrics = {f"autoencoder.synthetic.{name}": float(n) for name, n in zip(classes, added)}
    synthetic = {
        "images": synth_images,
        "labels": synth_labels.astype(np.int64),
        "classes": np.array(classes),
    }
    grid = ae.samples_grid(
        synth_images, synth_labels, classes, per_class=8, seed=options["seed"],
        title="Latent-SMOTE synthetic faces (train split only)",
    )
    return synthetic, grid, point_metrics(metrics)
