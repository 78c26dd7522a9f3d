"""The autoencoder stage's training: the class-weighted autoencoder on the train split, its per-class
reconstruction errors, and an unweighted twin to compare them with."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fer_pipeline.core.autoencoder import network as ae
from fer_pipeline.core.device import autocast_dtype_for, device_info, precision_name, resolve_device
from fer_pipeline.core.ingestion.dataset import Dataset, class_names, train_split

log = logging.getLogger(__name__)


#: Autoencoder-stage parameters that are not ``AutoencoderConfig`` fields.
AUTOENCODER_STAGE_KEYS = ("compare_unweighted", "oversampling")


def autoencoder_config(params: Mapping[str, Any], **overrides: Any) -> ae.AutoencoderConfig:
    """``AutoencoderConfig`` from the autoencoder stage's parameters: the stage's own keys
    (``AUTOENCODER_STAGE_KEYS``) are set aside, any other unknown key is an error with a hint."""
    fields = {k: v for k, v in params.items() if k not in AUTOENCODER_STAGE_KEYS}
    return ae.AutoencoderConfig.from_dict({**fields, **overrides})


def autoencoder_epoch_logger(params: Mapping[str, Any]) -> Callable[[int, Mapping[str, Any]], None]:
    """An ``on_epoch`` for ``train_autoencoder`` that logs each epoch's loss and rate (for runs
    without Kedro, whose nodes show a progress bar instead)."""
    epochs = autoencoder_config(params).epochs

    def on_epoch(epoch: int, row: Mapping[str, Any]) -> None:
        log.info("autoencoder epoch %d/%d: loss %.5f (%.0f img/s)", epoch, epochs, row["loss"], row["images_per_s"])

    return on_epoch


@dataclass
class AutoencoderRun:
    """What ``train_autoencoder`` returns."""

    model: ae.ConvAutoencoder
    config: ae.AutoencoderConfig
    history: list[dict]
    #: the unweighted twin's history; None when no twin ran
    twin_history: list[dict] | None
    #: one row per class: class, n, mse_<weighting>, mae_<weighting> (+ mse_none, mae_none,
    #: mse_change_pct when the twin ran)
    errors: list[dict]
    #: peak CUDA memory of the main training (MiB); None off CUDA
    peak_memory_mb: float | None = None
    #: what it ran on (``core.device.device_info``)
    device_info: dict[str, Any] | None = None


def train_autoencoder(
    dataset: Dataset,
    params: Mapping[str, Any],
    twin: bool | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    progress: bool = False,
) -> AutoencoderRun:
    """Train on the train split only, then the per-class reconstruction errors on it. With
    ``twin`` (default ``params["compare_unweighted"]``) and a weighting other than none, an
    unweighted twin is trained too and its errors join the table for comparison."""
    classes = class_names(dataset)
    images, labels = train_split(dataset)
    cfg = autoencoder_config(params)
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model, history = ae.train_autoencoder(images, labels, cfg, on_epoch=on_epoch, progress=progress, classes=classes)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    errors = [
        {"class": row["class"], "n": row["n"], f"mse_{cfg.weighting}": row["mse"], f"mae_{cfg.weighting}": row["mae"]}
        for row in ae.per_class_reconstruction_error(model, images, labels, classes, device=cfg.device)
    ]
    twin_history = None
    if (params.get("compare_unweighted") if twin is None else twin) and cfg.weighting != "none":
        twin_model, twin_history = ae.train_autoencoder(
            images, labels, autoencoder_config(params, weighting="none"), progress=progress, classes=classes
        )
        twin_errors = ae.per_class_reconstruction_error(twin_model, images, labels, classes, device=cfg.device)
        del twin_model
        for row, twin_row in zip(errors, twin_errors):
            row["mse_none"], row["mae_none"] = twin_row["mse"], twin_row["mae"]
            with np.errstate(divide="ignore", invalid="ignore"):  # NaN / inf as pandas gives them
                ratio = np.float64(row[f"mse_{cfg.weighting}"]) / np.float64(twin_row["mse"])
            row["mse_change_pct"] = float(100.0 * (ratio - 1.0))
    ran_on = {**device_info(device), "autocast": precision_name(autocast_dtype_for(cfg.amp, device)), "amp": cfg.amp}
    return AutoencoderRun(model, cfg, history, twin_history, errors, peak, ran_on)
