"""Face crops -> emotions: class probabilities from the model (labelled faces: ``recognizer``)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fer_pipeline.core.evaluation.metrics import softmax
from fer_pipeline.core.inference import predict_logits


def classify_crops(
    model: nn.Module,
    crops: np.ndarray,
    config: dict,
    tta: str = "none",
    device: str | torch.device | None = "auto",
    batch_size: int = 256,
    amp: bool | str = "auto",
) -> np.ndarray:
    """Class probabilities (F, K) of uint8 face crops (F, 48, 48): ``predict_logits`` (the
    model's own normalisation and input size, TTA, ``amp``; float32 logits whatever the
    autocast), then ``metrics.softmax`` in float64."""
    logits = predict_logits(model, crops, config, tta=tta, batch_size=batch_size, device=device, progress=False,
                            amp=amp)
    return softmax(logits)
