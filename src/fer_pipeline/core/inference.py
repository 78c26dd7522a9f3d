"""Batched inference of a trained classifier with test-time augmentation: uint8 faces -> logits.

``predict_logits`` is the one inference path: the evaluation stage, the training loop's
validation and the predict stage all call it. It needs only torch and torchvision. Its
preprocessing and TTA are ``batched_logits``, which the ONNX Runtime back-end
(``core.onnx_model``) shares: only the forward pass differs.

Preprocessing follows the model config (``core.models.model_config``): uint8 faces -> [0, 1]
-> crop/resize to ``input_size`` -> ``(x - mean) / std`` -> repeated to 3 channels when
``in_channels == 3``. Test-time augmentation (TTA) views are run one at a time (so memory
does not grow with the number of views) and their logits are averaged:

* ``none``: the centre crop of side ``input_size`` (the whole face when input_size is 48).
* ``flip``: the centre crop and its horizontal mirror (2 views).
* ``ten_crop``: torchvision's ten_crop: 4 corner + centre crops and their mirrors (10 views).
  When ``input_size`` is smaller than the face (44 of 48) the crops are taken at input_size,
  exactly the crops the random-crop training augmentation could have produced. When the model
  takes the whole face (input_size 48) there is nothing to crop, so the crops are taken at
  ``round(48 * 44/48) = 44`` px and resized back (bilinear) to input_size: a 1.09x zoom with
  at most a 4 px shift, inside the range of shift/scale augmentation used in training.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.device import autocast_dtype_for, resolve_device
from fer_pipeline.core.pixels import MEAN, STD, to_float

try:
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover - tqdm is optional on the GPU box
    tqdm = None

TTA_MODES: tuple[str, ...] = ("none", "flip", "ten_crop")

#: Crop side relative to the face for ten_crop when the model takes the whole 48 px face.
TEN_CROP_RATIO = 44 / 48


def _config_input_size(config: dict, image_size: int) -> int:
    size = config.get("input_size", image_size)
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise ValueError(f"only square inputs are supported, got input_size={size}")
        size = size[0]
    return int(size)


def _crop_or_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Centre crop to ``size`` when the image is larger, bilinear resize when it is smaller."""
    from torchvision.transforms.v2 import functional as TF

    height = x.shape[-1]
    if height > size:
        return TF.center_crop(x, [size, size])
    if height < size:
        return TF.resize(x, [size, size], antialias=False)
    return x


def _tta_views(x: torch.Tensor, input_size: int, tta: str) -> list[torch.Tensor]:
    """[0,1] float batch (B,1,H,W) -> the list of views whose logits are averaged."""
    from torchvision.transforms.v2 import functional as TF

    if tta == "none":
        return [_crop_or_resize(x, input_size)]
    if tta == "flip":
        center = _crop_or_resize(x, input_size)
        return [center, TF.horizontal_flip(center)]
    if tta == "ten_crop":
        image_size = x.shape[-1]
        if input_size < image_size:
            return list(TF.ten_crop(x, [input_size, input_size]))
        crop = round(image_size * TEN_CROP_RATIO)
        crops = TF.ten_crop(x, [crop, crop])
        return [TF.resize(c, [input_size, input_size], antialias=False) for c in crops]
    raise ValueError(f"tta must be one of {TTA_MODES}, got {tta!r}")


def _normalizer(config: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    in_channels = int(config.get("in_channels", 1))
    mean = torch.as_tensor(config.get("mean", MEAN), dtype=torch.float32, device=device).reshape(1, -1, 1, 1)
    std = torch.as_tensor(config.get("std", STD), dtype=torch.float32, device=device).reshape(1, -1, 1, 1)
    return mean, std, in_channels


def predict_logits(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    config: dict,
    tta: str = "none",
    batch_size: int = 256,
    device: str | torch.device | None = "auto",
    progress: bool = False,
    channels_last: bool = True,
    amp: bool | str = "auto",
) -> np.ndarray:
    """Logits (N, K) float32 for uint8 faces (N,H,W) or (N,1,H,W), TTA views averaged.

    The model is put in eval mode and moved to ``device`` (and channels_last memory format,
    which is faster for convolutions on CUDA and on CPU). ``amp``: ``auto`` | ``on`` | ``off``
    (``core.device.autocast_dtype_for``): auto = bf16 autocast where the device runs bf16
    natively (CUDA, CPUs with AVX512-BF16/AMX, ~1.5-2x faster), float32 elsewhere. The logits
    come back float32 and the TTA views are averaged in float32.
    """
    images = _uint8_faces(images, tta)  # bad input fails before the model is moved
    device = resolve_device(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.eval()
    model.to(device=device, memory_format=memory_format)
    autocast_dtype = autocast_dtype_for(amp, device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=autocast_dtype or torch.bfloat16,
                                                    enabled=autocast_dtype is not None):
        return batched_logits(lambda view: model(view.contiguous(memory_format=memory_format)).float(), images,
                              config, tta=tta, batch_size=batch_size, device=device, progress=progress)


def batched_logits(
    forward: Callable[[torch.Tensor], torch.Tensor],
    images: np.ndarray | torch.Tensor,
    config: dict,
    tta: str = "none",
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> np.ndarray:
    """Logits (N, K) float32 of uint8 faces (N,H,W) or (N,1,H,W) by ``forward``, which maps one
    normalised view (B, in_channels, S, S) float32 on ``device`` to its (B, K) logits: the
    preprocessing and TTA every back-end shares (a torch module, ``predict_logits``; an ONNX
    Runtime session, ``core.onnx_model``), so that only the forward pass differs."""
    images = _uint8_faces(images, tta)
    device = torch.device(device)
    input_size = _config_input_size(config, int(images.shape[-1]))
    mean, std, in_channels = _normalizer(config, device)
    num_images = int(images.shape[0])
    starts = range(0, num_images, batch_size)
    if progress and tqdm is not None:
        starts = tqdm(starts, total=math.ceil(num_images / batch_size), desc=f"predict (tta={tta})", unit="batch")

    outputs: list[torch.Tensor] = []
    for start in starts:
        batch = to_float(images[start : start + batch_size].to(device, non_blocking=True))
        logits_sum = None
        views = _tta_views(batch, input_size, tta)
        for view in views:
            if mean.shape[1] == 1:
                view = (view - mean) / std
            if in_channels != view.shape[1]:
                view = view.expand(-1, in_channels, -1, -1)
            if mean.shape[1] != 1:
                view = (view - mean) / std
            logits = forward(view)
            logits_sum = logits if logits_sum is None else logits_sum + logits
        outputs.append((logits_sum / len(views)).cpu())
    if not outputs:
        num_classes = int(config.get("num_classes", len(config.get("classes", CLASSES))))
        return np.zeros((0, num_classes), dtype=np.float32)
    return torch.cat(outputs).numpy().astype(np.float32, copy=False)


def _uint8_faces(images: np.ndarray | torch.Tensor, tta: str) -> torch.Tensor:
    """The (N, H, W) uint8 tensor of square faces (N,H,W) or (N,1,H,W); ``tta`` checked first."""
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, got {tta!r}")
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise TypeError(f"faces must be uint8, got {images.dtype}")
        images = torch.from_numpy(np.ascontiguousarray(images))
    elif images.dtype != torch.uint8:
        raise TypeError(f"faces must be uint8, got {images.dtype}")
    if images.dim() == 4:
        images = images[:, 0]
    if images.dim() != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"expected square faces (N,H,W), got shape {tuple(images.shape)}")
    return images
