"""The on-device data path of training: per-epoch batch indices, and a batch -> model input.

The uint8 faces live on the training device; a step indexes its batch there, converts it to
float, augments it with ``core.augmentation.transforms.BatchAugment`` (per-sample random parameters), mixes it
(mixup / cutmix), normalises it and lays it out for the model. No DataLoader, no per-image
Python. ``core.training.loop`` and ``fer_pipeline.runner.throughput`` use these.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from fer_pipeline.core.pixels import normalize, to_float


def model_inputs(x: torch.Tensor, in_channels: int, channels_last: bool) -> torch.Tensor:
    """Normalised (B,1,H,W) -> what the model takes (3 channels repeated, memory format)."""
    if in_channels == 3:
        x = x.expand(-1, 3, -1, -1)
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def epoch_batch_indices(
    num_samples: int,
    num_batches: int,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    sample_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """(num_batches, batch_size) sample indices for one epoch, drawn on ``device``.

    Without weights: concatenated random permutations (each sample once per pass). With
    weights: draws with replacement in proportion to them.
    """
    total = num_batches * batch_size
    if sample_weights is not None:
        flat = torch.multinomial(sample_weights, total, replacement=True, generator=generator)
    else:
        passes = math.ceil(total / num_samples)
        flat = torch.cat([torch.randperm(num_samples, generator=generator, device=device) for _ in range(passes)])
    return flat[:total].view(num_batches, batch_size)


def prepare_train_batch(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_indices: torch.Tensor,
    augment: nn.Module | None,
    mix: Callable | None,
    in_channels: int = 1,
    channels_last: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index uint8 faces on the device -> augmented, normalised model input and targets.

    ``augment``: a ``core.augmentation.transforms.BatchAugment`` (random parameters from ``generator``);
    ``mix``: ``core.augmentation.transforms.build_mixup_cutmix`` output (soft targets; torch's global RNG).
    """
    x = to_float(images[batch_indices])
    y = labels[batch_indices]
    if augment is not None:
        x = augment(x, generator=generator)
    if mix is not None:
        x, y = mix(x, y)
    return model_inputs(normalize(x), in_channels, channels_last), y
