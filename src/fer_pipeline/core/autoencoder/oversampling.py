"""The autoencoder stage's oversampling: latent-SMOTE faces for the minority classes of the train split.

``latent_smote`` follows Dablain et al., "DeepSMOTE: Fusing Deep Learning and SMOTE for Imbalanced
Data" (IEEE TNNLS 2022): encode the images of a minority class, interpolate between a sample and
one of its k nearest same-class neighbours in latent space, decode. ``oversampling_targets`` says
how many faces each class should reach; ``oversample`` is the stage: both on the train split.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from fer_pipeline.core.autoencoder.network import ConvAutoencoder, load_autoencoder, model_device, to_uint8
from fer_pipeline.core.classes import IMAGE_SIZE
from fer_pipeline.core.device import resolve_device
from fer_pipeline.core.ingestion.dataset import Dataset, class_names, train_split
from fer_pipeline.core.pixels import as_tensor_images, to_float


@torch.no_grad()
def _encode_batches(model: ConvAutoencoder, images_u8: torch.Tensor, batch_size: int) -> torch.Tensor:
    chunks = [model.encode(to_float(images_u8[i : i + batch_size])) for i in range(0, len(images_u8), batch_size)]
    return torch.cat(chunks)


@torch.no_grad()
def _decode_batches(model: ConvAutoencoder, z: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model.decode(z[i : i + batch_size]) for i in range(0, len(z), batch_size)])


def oversampling_targets(counts: Sequence[int] | np.ndarray, fraction_of_largest: float = 0.5) -> np.ndarray:
    """Target count per class: max(n_c, ceil(fraction * largest)); larger classes are untouched."""
    counts = np.asarray(counts, dtype=np.int64)
    if not 0.0 <= fraction_of_largest <= 1.0:
        raise ValueError(f"fraction_of_largest must be in [0, 1], got {fraction_of_largest}")
    floor = int(math.ceil(fraction_of_largest * counts.max())) if counts.size else 0
    return np.maximum(counts, floor)


def _nearest_neighbours(z: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """Indices (n, k) of each row's k nearest other rows (Euclidean), computed in row chunks."""
    out = []
    for start in range(0, len(z), chunk):
        dist = torch.cdist(z[start : start + chunk], z)
        rows = torch.arange(start, min(start + chunk, len(z)), device=z.device)
        dist[rows - start, rows] = float("inf")  # a sample is not its own neighbour
        out.append(dist.topk(k, dim=1, largest=False).indices)
    return torch.cat(out)


@torch.no_grad()
def latent_smote(
    model: ConvAutoencoder,
    images: np.ndarray,
    labels: np.ndarray,
    targets: Sequence[int] | np.ndarray,
    k: int = 5,
    seed: int = 0,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    single_sample_jitter: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """SMOTE in the autoencoder's latent space: ``targets[c] - n_c`` new faces per short class.

    For each class c with n_c < targets[c]: encode its images, then per new sample draw a base
    sample a, one of its k nearest same-class neighbours b (k = min(k, n_c - 1), torch.cdist),
    u ~ U(0,1), and decode z = z_a + u * (z_b - z_a). A class with a single image has no
    neighbour: its new samples decode z_a + noise, noise ~ N(0, (single_sample_jitter *
    std(z_a))^2) per latent dimension. A class with no image but a positive target raises.

    Only class c's images feed class c's samples, and each class draws from its own generator
    seeded by (seed, c), so the output is reproducible and independent of the other classes.
    Returns uint8 (M,48,48) and int64 (M,) labels, grouped by class in ascending order.
    """
    device = resolve_device(device) if device is not None else model_device(model)
    model = model.to(device).eval()
    labels = np.asarray(labels, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    counts = np.bincount(labels, minlength=len(targets))
    if len(counts) > len(targets):
        raise ValueError("labels contain classes beyond len(targets)")
    if k < 1:
        raise ValueError("k must be >= 1")
    new_images, new_labels = [], []
    for c in range(len(targets)):
        needed = int(targets[c] - counts[c])
        if needed <= 0:
            continue
        n = int(counts[c])
        if n == 0:
            raise ValueError(f"class {c} has no images to oversample from (target {targets[c]})")
        class_images = as_tensor_images(np.ascontiguousarray(images[labels == c]), device)
        z = _encode_batches(model, class_images, batch_size).float()
        generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + c)  # CPU: same draws on any device
        base = torch.randint(n, (needed,), generator=generator)
        if n == 1:
            noise = torch.randn(needed, z.shape[1], generator=generator).to(device)
            new_z = z[base.to(device)] + single_sample_jitter * z.std() * noise
        else:
            k_eff = min(k, n - 1)
            neighbours = _nearest_neighbours(z, k_eff)
            pick = torch.randint(k_eff, (needed,), generator=generator)
            u = torch.rand(needed, 1, generator=generator).to(device)
            base, pick = base.to(device), pick.to(device)
            z_a = z[base]
            z_b = z[neighbours[base, pick]]
            new_z = z_a + u * (z_b - z_a)
        new_images.append(to_uint8(_decode_batches(model, new_z, batch_size)))
        new_labels.append(np.full(needed, c, dtype=np.int64))
    if not new_images:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8), np.zeros(0, dtype=np.int64)
    return np.concatenate(new_images), np.concatenate(new_labels)


def oversample(
    dataset: Dataset, model: ConvAutoencoder | str | os.PathLike, params: Mapping[str, Any]
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
            model = load_autoencoder(model)
        targets = oversampling_targets(counts, options["fraction_of_largest"])
        synth_images, synth_labels = latent_smote(
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
