"""Conversions between stored uint8 faces and model-ready float tensors."""

from __future__ import annotations

import numpy as np
import torch

#: Fixed normalisation for 1-channel faces; recorded in every model config.
MEAN = 0.5
STD = 0.25


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B,H,W) or (B,1,H,W) -> float32 (B,1,H,W) in [0, 1]."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    return images.float().div_(255.0)


def normalize(x: torch.Tensor, mean: float = MEAN, std: float = STD) -> torch.Tensor:
    """[0,1] floats -> the normalised input the classifier sees."""
    return (x - mean) / std


def as_tensor_images(images: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """Stored uint8 faces (N,48,48) -> a uint8 tensor on ``device`` (no copy when already there)."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise TypeError(f"faces must be uint8, got {images.dtype}")
        images = torch.from_numpy(np.ascontiguousarray(images))
    return images.to(device)
