"""Face crops -> emotions: class probabilities from the model (labelled faces: ``recognizer``)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fer_pipeline.core.evaluation.metrics import softmax
from fer_pipeline.core.inference import predict_logits
from fer_pipeline.core.onnx_model import OnnxModel


def classify_crops(
    model: nn.Module | OnnxModel,
    crops: np.ndarray,
    config: dict,
    tta: str = "none",
    device: str | torch.device | None = "auto",
    batch_size: int = 256,
    amp: bool | str = "auto",
) -> np.ndarray:
    """Class probabilities (F, K) of uint8 face crops (F, 48, 48): ``predict_logits`` (the
    model's own normalisation and input size, TTA, ``amp``; float32 logits whatever the
    autocast), then ``metrics.softmax`` in float64. An ``OnnxModel`` (the onnxruntime back-end)
    runs the same preprocessing and TTA in float32 on the CPU (``device`` and ``amp`` are torch's)."""
    if isinstance(model, OnnxModel):
        logits = model.predict_logits(crops, tta=tta, batch_size=batch_size)
    else:
        logits = predict_logits(model, crops, config, tta=tta, batch_size=batch_size, device=device, progress=False,
                                amp=amp)
    return softmax(logits)
