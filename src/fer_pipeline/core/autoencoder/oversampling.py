"""The autoencoder stage's oversampling: latent-SMOTE faces for the minority classes of the train split."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from fer_pipeline.core.autoencoder import network as ae
from fer_pipeline.core.ingestion.dataset import Dataset, class_names, train_split


def oversample(
    dataset: Dataset, model: ae.ConvAutoencoder | str | os.PathLike, params: Mapping[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Latent SMOTE on the train split up to ``oversampling_targets`` (``params["oversampling"]``):
    (synthetic set, info with ``targets`` and ``added`` per class). ``model``: the autoencoder,
    or its file (loaded only when oversampling is enabled)."""
    classes = class_names(dataset)
    images, labels = train_split(dataset)
    options = params["oversampling"]
    counts = np.bincount(labels, minlength=len(classes))
    if options.get("enabled", True):
        if not isinstance(model, torch.nn.Module):
            model = ae.load_autoencoder(model)
        targets = ae.oversampling_targets(counts, options["fraction_of_largest"])
        synth_images, synth_labels = ae.latent_smote(
            model, images, labels, targets, k=options["k"], seed=options["seed"], device=params.get("device", "auto")
        )
    else:
        targets = counts
        synth_images = np.zeros((0, *images.shape[1:]), dtype=np.uint8)
        synth_labels = np.zeros(0, dtype=np.int64)
    synthetic = {"images": synth_images, "labels": synth_labels.astype(np.int64), "classes": np.array(classes)}
    added = np.bincount(synthetic["labels"], minlength=len(classes))
    info = {"targets": dict(zip(classes, np.asarray(targets).tolist())), "added": dict(zip(classes, added.tolist()))}
    return synthetic, info
