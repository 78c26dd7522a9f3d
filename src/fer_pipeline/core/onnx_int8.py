"""An int8 ONNX classifier: ONNX Runtime's static quantisation of the float32 export, calibrated on
training faces, and checked against PyTorch like the float32 export.

    agreement = export_int8(model, config, "resnet34_int8.onnx", faces, calibration)

``quantize_int8`` quantises a float32 export (``onnx_export.onnx_bytes``) with
``onnxruntime.quantization.quantize_static``: weights int8 per output channel, activations uint8,
in QDQ form (what ONNX Runtime's CPU provider fuses into integer convolutions), the activation
ranges calibrated (min-max) on ``calibration`` faces through the float model's own preprocessing
(``inference.batched_logits``). Calibrate on training faces, never on the faces the model is
scored on. The file keeps the float export's metadata, plus ``quantization``.

int8 is not float32: its classes differ from PyTorch's on a few faces, so ``export_int8`` refuses
only a model that agrees on fewer than ``INT8_MIN_AGREEMENT`` of them (a broken quantisation), and
reports the agreement for the caller to state.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_pipeline.core.inference import batched_logits
from fer_pipeline.core.onnx_export import (
    DEFAULT_TOLERANCE,
    Agreement,
    OnnxExportError,
    compare,
    convert,
    reference_logits,
)
from fer_pipeline.core.onnx_model import INPUT_NAME, onnx_model_from_bytes
from fer_pipeline.files import write_bytes

#: The least share of faces on which the int8 model's class must be PyTorch float32's: below it the
#: quantisation broke the model (a working one agreed on 98-99 % of FER2013 faces).
INT8_MIN_AGREEMENT = 0.95
#: Training faces the activation ranges are calibrated on (``fer-export --int8``'s default).
CALIBRATION_FACES = 512
#: The metadata field saying how the model was quantised.
QUANTIZATION_KEY = "quantization"


def model_inputs(faces: np.ndarray, config: Mapping[str, Any]) -> np.ndarray:
    """What the classifier's ONNX input receives for uint8 ``faces`` (N, H, W): float32 (N, C, S, S),
    cropped and normalised as ``inference.batched_logits`` does for every back-end."""
    views: list[np.ndarray] = []

    def keep(view: torch.Tensor) -> torch.Tensor:
        views.append(view.numpy().copy())
        return torch.zeros(len(view), 1)

    batched_logits(keep, faces, dict(config), tta="none", batch_size=64)
    return np.concatenate(views).astype(np.float32, copy=False)


def quantize_int8(float_onnx: bytes, config: Mapping[str, Any], calibration: np.ndarray) -> bytes:
    """The int8 model of the float32 ONNX model ``float_onnx``, calibrated on uint8 ``calibration``
    faces (N, H, W); its metadata the float model's plus ``QUANTIZATION_KEY``."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not len(calibration):
        raise ValueError("no faces to calibrate the int8 model on")
    inputs = model_inputs(calibration, config)

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{INPUT_NAME: inputs[start:start + 64]} for start in range(0, len(inputs), 64)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory(prefix="fer_int8_") as folder:
        source, prepared, quantized = (Path(folder) / name for name in ("float.onnx", "prepared.onnx", "int8.onnx"))
        source.write_bytes(float_onnx)
        with _root_logger_quiet():  # its INFO lines (one per copied bias) go to the root logger
            quant_pre_process(str(source), str(prepared))  # shape inference and folding, as ONNX Runtime advises
            quantize_static(str(prepared), str(quantized), Batches(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        proto = onnx.load(str(quantized))
    float_proto = onnx.load_from_string(float_onnx)
    del proto.metadata_props[:]
    proto.metadata_props.extend(float_proto.metadata_props)
    entry = proto.metadata_props.add()
    entry.key = QUANTIZATION_KEY
    entry.value = (f"int8 static (onnxruntime QDQ): weights int8 per channel, activations uint8, ranges calibrated "
                   f"(min-max) on {len(calibration)} training faces")
    proto.doc_string = float_proto.doc_string + " (int8)"
    return proto.SerializeToString()


@contextlib.contextmanager
def _root_logger_quiet() -> Iterator[None]:
    """The root logger at WARNING at least for the block: onnxruntime.quantization logs through it."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def export_int8(model: nn.Module, config: Mapping[str, Any], out: str | os.PathLike, faces: np.ndarray,
                calibration: np.ndarray, min_agreement: float = INT8_MIN_AGREEMENT,
                source: str = "the model", tolerance: float = DEFAULT_TOLERANCE) -> Agreement:
    """The float32 export checked as ``onnx_export.convert`` checks it (``tolerance``), quantised (``quantize_int8``),
    compared with PyTorch float32 on ``faces`` and written to ``out`` atomically; ``OnnxExportError``
    (nothing written) when the int8 model's class agrees on fewer than ``min_agreement`` of them."""
    reference = reference_logits(model, config, faces)  # one PyTorch pass for both checks
    float_onnx, _, _ = convert(model, config, faces, tolerance=tolerance, source=source, reference=reference)
    data = quantize_int8(float_onnx, config, calibration)
    agreement = compare(model, onnx_model_from_bytes(data, f"the int8 export of {source}"), config, faces, reference)
    if agreement.top1_agreement < min_agreement:
        raise OnnxExportError(f"the int8 export of {source} gives PyTorch's class on {agreement.top1_agreement:.2%} "
                              f"of {agreement.faces} faces (needed {min_agreement:.0%}): the quantisation broke it. "
                              "Nothing was written; calibrate on more training faces, or keep the float32 export")
    write_bytes(out, data)
    return agreement
