"""Small model files and their ONNX exports for the onnxruntime back-end's tests."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fer_pipeline.core.models import build_resnet34, model_config, save_model
from fer_pipeline.core.onnx_export import export_onnx, synthetic_faces

#: A record of the dataset a model was trained on, as training writes it.
TRAINING_DATA = {"dataset_id": "0123456789abcdef", "split_sizes": {"train": 10, "val": 2, "test": 2}}


def small_model(seed: int = 0) -> tuple[nn.Module, dict]:
    """A random-weight ResNet-18 with the cheap ImageNet stem (44 px input): quick to export and run."""
    torch.manual_seed(seed)
    config = {**model_config(arch="resnet18", stem="imagenet", input_size=44), "training_data": TRAINING_DATA}
    return build_resnet34(arch="resnet18", stem="imagenet").eval(), config


def small_model_files(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """(``model.pt``, ``model.onnx``) of ``small_model(seed)`` in ``folder``, the export checked on drawn faces."""
    model, config = small_model(seed)
    pt = save_model(folder / "model.pt", model, config)
    export_onnx(model, config, folder / "model.onnx", synthetic_faces(16))
    return pt, folder / "model.onnx"
