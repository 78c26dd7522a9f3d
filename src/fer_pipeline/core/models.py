"""ResNet classifiers for 48x48 grayscale faces, and their model files.

``build_resnet34`` wraps torchvision's ResNet-34 (never downloads weights) in ``FERResNet``:

* ``stem="small"``: conv1 becomes 3x3 stride 1 and the max-pool is removed, so a 48 px face
  keeps a 6x6 map at layer4 (the usual choice for the best FER2013 accuracies);
  ``stem="small_pool"``: the same 3x3 stride-1 conv, but the max-pool kept (a 3x3 map at
  layer4 for a 44 px crop; 3-4x cheaper than ``small``: the CPU environment's stem);
  ``stem="imagenet"`` keeps the 7x7 stride-2 conv + max-pool (4x cheaper again, 2x2 map at layer4).
* ``aux_reconstruction=True`` adds a small decoder from the layer4 features that reconstructs
  the (normalised) input: an auxiliary autoencoder loss that regularises the backbone.
  ``forward(x)`` always returns logits, so evaluation, EMA and export never special-case it;
  ``forward(x, with_aux=True)`` (or ``forward_with_aux``) returns ``(logits, reconstruction)``.
  Initialising the backbone from a separately trained autoencoder is not implemented: the
  auxiliary head covers the "autoencoder helps the ResNet" idea inside one training run.
* ``classifier="cosine"``: a normalised linear layer (cosine similarities in [-1, 1]), the head
  that LDAM's scale s=30 assumes (Cao et al. 2019 pair it with LDAM).

Model files are ``model_bundle(...)``: ``{"config": model_config(...), "state_dict": ...}`` (see
docs/DESIGN.md), loaded with ``torch.load(weights_only=True)`` (``core.model_files``); ``save_model(dtype=torch.float16)``
halves them (``fer_pipeline.runner.model_transport`` carries one through a per-file size limit).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from fer_pipeline.core.classes import CLASSES, IMAGE_SIZE
from fer_pipeline.core.model_files import load_weights, not_a_model, read_bundle
from fer_pipeline.core.pixels import MEAN, STD
from fer_pipeline.files import atomic_path

ARCHITECTURES = ("resnet18", "resnet34")
STEMS = ("small", "small_pool", "imagenet")
CLASSIFIERS = ("linear", "cosine")

#: Keys of a model config that are build arguments (the rest describe the input / labels).
_BUILD_KEYS = ("arch", "stem", "in_channels", "num_classes", "aux_reconstruction", "dropout", "classifier")


class CosineClassifier(nn.Module):
    """Logits = cosine similarity between the normalised feature and normalised class weights."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features).uniform_(-1, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features, dim=1) @ F.normalize(self.weight, dim=1).t()


class ReconstructionDecoder(nn.Module):
    """Small decoder: layer4 map (C, h, w) -> image (in_channels, H, W) at the input size."""

    def __init__(self, in_features: int, out_channels: int, width: int = 64) -> None:
        super().__init__()
        self.reduce = nn.Sequential(
            nn.Conv2d(in_features, 2 * width, 1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True)
        )
        self.refine = nn.Sequential(
            nn.Conv2d(2 * width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        self.out = nn.Conv2d(width, out_channels, 3, padding=1)

    def forward(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.reduce(features)
        # Two bilinear steps (to 1/4, then full size) instead of transposed convs: no
        # checkerboard artefacts, and any input size works.
        x = F.interpolate(x, size=(max(1, size[0] // 4), max(1, size[1] // 4)), mode="bilinear", align_corners=False)
        x = self.refine(x)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.out(x)


class FERResNet(nn.Module):
    """torchvision ResNet backbone + dropout + classifier (+ optional reconstruction head)."""

    def __init__(
        self,
        backbone: torchvision.models.ResNet,
        num_classes: int,
        in_channels: int,
        dropout: float = 0.0,
        aux_reconstruction: bool = False,
        classifier: str = "linear",
    ) -> None:
        super().__init__()
        feature_dim = backbone.fc.in_features
        backbone.fc = nn.Identity()  # the head lives here, so the backbone keys stay torchvision's
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if classifier == "linear":
            self.classifier: nn.Module = nn.Linear(feature_dim, num_classes)
        elif classifier == "cosine":
            self.classifier = CosineClassifier(feature_dim, num_classes)
        else:
            raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {classifier!r}")
        self.decoder = ReconstructionDecoder(feature_dim, in_channels) if aux_reconstruction else None

    @property
    def has_aux(self) -> bool:
        return self.decoder is not None

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Layer4 activations (B, 512, h, w)."""
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        return b.layer4(b.layer3(b.layer2(b.layer1(x))))

    def forward(self, x: torch.Tensor, with_aux: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        fmap = self.feature_map(x)
        logits = self.classifier(self.dropout(torch.flatten(self.backbone.avgpool(fmap), 1)))
        if not with_aux:
            return logits
        if self.decoder is None:
            raise RuntimeError("this model was built without aux_reconstruction")
        return logits, self.decoder(fmap, (x.shape[-2], x.shape[-1]))

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, reconstruction of the normalised input)."""
        return self(x, with_aux=True)


def _load_imagenet_state(path: str | os.PathLike, in_channels: int, stem: str) -> dict[str, torch.Tensor]:
    """A local torchvision ResNet state dict adapted to this stem / channel count (fc dropped)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    state = {k: v for k, v in _strip_prefixes(state).items() if not k.startswith("fc.")}
    conv1 = state.get("conv1.weight")
    if conv1 is not None:
        if stem in ("small", "small_pool"):
            # A 7x7 stride-2 kernel has no faithful 3x3 stride-1 counterpart: keep the random init.
            del state["conv1.weight"]
        elif in_channels == 1 and conv1.shape[1] == 3:
            # Grey = equal RGB, so summing the RGB filters gives the same response on grey input.
            state["conv1.weight"] = conv1.sum(dim=1, keepdim=True)
        elif conv1.shape[1] != in_channels:
            raise ValueError(f"conv1 in {path} has {conv1.shape[1]} input channels, model has {in_channels}")
    return state


def build_resnet34(
    num_classes: int = len(CLASSES),
    in_channels: int = 1,
    stem: str = "small",
    weights_path: str | os.PathLike | None = None,
    aux_reconstruction: bool = False,
    dropout: float = 0.0,
    classifier: str = "linear",
    arch: str = "resnet34",
) -> FERResNet:
    """ResNet-34 (or ``arch="resnet18"``, handy for quick tests) for FER faces.

    ``weights_path``: optional local torchvision ImageNet state dict (never downloaded); conv1
    is summed over RGB for 1-channel input, skipped for the stride-1 stems (small, small_pool);
    fc is always new.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    backbone = getattr(torchvision.models, arch)(weights=None)
    if stem in ("small", "small_pool"):
        backbone.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        if stem == "small":
            backbone.maxpool = nn.Identity()
    elif in_channels != 3:
        backbone.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    if weights_path is not None:
        state = _load_imagenet_state(weights_path, in_channels, stem)
        missing, unexpected = backbone.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.") and k != "conv1.weight"]
        if missing or unexpected:
            raise ValueError(f"{weights_path} does not match {arch}: missing {missing}, unexpected {unexpected}")
    return FERResNet(backbone, num_classes, in_channels, dropout, aux_reconstruction, classifier)


def build_model(config: Mapping[str, Any]) -> FERResNet:
    """Rebuild an (untrained) model from a model config (extra keys are ignored)."""
    return build_resnet34(**{k: config[k] for k in _BUILD_KEYS if k in config})


def model_config(
    arch: str = "resnet34",
    stem: str = "small",
    in_channels: int = 1,
    num_classes: int = len(CLASSES),
    classes: Sequence[str] = CLASSES,
    input_size: int = IMAGE_SIZE,
    mean: float = MEAN,
    std: float = STD,
    aux_reconstruction: bool = False,
    dropout: float = 0.0,
    classifier: str = "linear",
) -> dict[str, Any]:
    """Everything needed to rebuild the model and feed it: plain Python types only."""
    if len(classes) != num_classes:
        raise ValueError(f"{len(classes)} class names for {num_classes} classes")
    return {
        "arch": str(arch),
        "stem": str(stem),
        "in_channels": int(in_channels),
        "num_classes": int(num_classes),
        "classes": [str(c) for c in classes],
        "input_size": int(input_size),
        "mean": float(mean),
        "std": float(std),
        "aux_reconstruction": bool(aux_reconstruction),
        "dropout": float(dropout),
        "classifier": str(classifier),
    }


def _strip_prefixes(state: Mapping[str, Any]) -> dict[str, Any]:
    """Drop wrapper prefixes (torch.compile ``_orig_mod.``, DataParallel / AveragedModel ``module.``)
    and AveragedModel's ``n_averaged`` counter."""
    cleaned = {}
    for key, value in state.items():
        if key == "n_averaged":
            continue
        changed = True
        while changed:
            changed = False
            for prefix in ("_orig_mod.", "module."):
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        cleaned[key] = value
    return cleaned


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside torch.compile / AveragedModel / (Distributed)DataParallel wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, (torch.optim.swa_utils.AveragedModel, nn.DataParallel,
                                nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            return model


def model_bundle(model: nn.Module, config: Mapping[str, Any], dtype: torch.dtype | None = None) -> dict[str, Any]:
    """``{"config", "state_dict"}`` of a model file: the plain module's weights (wrapper prefixes
    stripped) on CPU. ``dtype=torch.float16`` stores the floating tensors in half precision, half
    the file; a tensor whose values do not fit float16 stays float32 (``load_model`` casts them
    back to the model's float32)."""
    state = _strip_prefixes(unwrap_model(model).state_dict())
    state = {k: v.detach().cpu() for k, v in state.items()}
    if dtype is not None:
        state = {k: _cast_if_representable(v, dtype) for k, v in state.items()}
    return {"config": dict(config), "state_dict": state}


def save_model(path: str | os.PathLike, model: nn.Module, config: Mapping[str, Any],
               dtype: torch.dtype | None = None) -> Path:
    """Write ``model_bundle(model, config, dtype)`` atomically (``files.atomic_path``)."""
    with atomic_path(path) as tmp:
        torch.save(model_bundle(model, config, dtype), tmp)
    return Path(path)


def _cast_if_representable(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return tensor
    if tensor.abs().max().item() > torch.finfo(dtype).max:  # would overflow to inf
        return tensor
    return tensor.to(dtype)


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[FERResNet, dict]:
    """(model in eval mode, config) from a file written by ``save_model``; ``ModelFileError`` (a
    ``ParameterError``) for any other file (``core.model_files.read_bundle``)."""
    payload = read_bundle(path)
    config = payload["config"]
    try:
        model = build_model(config)
    except (TypeError, ValueError) as error:  # a bundle, but its config is not one of this ResNet's
        raise not_a_model(path, f"its config is not this project's ResNet: {error}") from error
    load_weights(model, _strip_prefixes(payload["state_dict"]), path)
    return model.to(map_location).eval(), config
