"""A trained classifier exported to ONNX, checked against PyTorch before it is written.

    agreement = export_onnx(model, config, "resnet34.onnx", faces)   # faces: (N, 48, 48) uint8

``onnx_bytes`` exports with torch's TorchScript-based exporter (``dynamo=False``): of torch's two,
the one that needs only the ``onnx`` package (the dynamo exporter also needs ``onnxscript``) and
that exports this ResNet alike from torch 2.5 to 2.14; opset ``OPSET``, a dynamic batch axis, and
the model config in the file's metadata (``core.onnx_model.readable_metadata``).

``convert`` then runs the ONNX model with ONNX Runtime and the module with PyTorch (float32) on
the same faces through the same preprocessing (``core.inference.batched_logits``) and refuses a
model (``OnnxExportError``) whose logits differ by more than ``tolerance`` anywhere (times the
largest logit where that is over 1) or whose top-1
class differs on more than ``1 - min_agreement`` of the faces. ``export_onnx`` writes the file
only then, atomically (temp file + rename): a refused or interrupted export leaves nothing.
``onnx_model_from_module`` does the same in memory (a ``.pt`` run with ``--backend onnxruntime``),
checked on ``synthetic_faces`` when no real ones are given.
"""

from __future__ import annotations

import copy
import io
import os
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_pipeline.core.backends import CHECK_FACES, DEFAULT_TOLERANCE, MIN_AGREEMENT
from fer_pipeline.core.classes import IMAGE_SIZE
from fer_pipeline.core.config import ParameterError
from fer_pipeline.core.inference import predict_logits
from fer_pipeline.core.onnx_model import INPUT_NAME, OUTPUT_NAME, OnnxModel, onnx_model_from_bytes, readable_metadata
from fer_pipeline.files import write_bytes

#: ONNX opset: what torch 2.5's TorchScript exporter and onnxruntime 1.18 both support.
OPSET = 17
class OnnxExportError(ParameterError):
    """The exported model does not agree with PyTorch: it is not written."""


@dataclass(frozen=True)
class Agreement:
    """ONNX Runtime against PyTorch float32 on ``faces`` faces: the largest absolute logit
    difference, the share of faces with the same top-1 class, the largest absolute PyTorch logit
    (``logit_scale``: float32 rounding grows with it, so the tolerance does), and for each face whose
    class differs, PyTorch's margin between its two best classes (``flip_margins``)."""

    faces: int
    max_abs_diff: float
    top1_agreement: float
    logit_scale: float = 1.0
    flip_margins: tuple[float, ...] = ()

    def problems(self, tolerance: float = DEFAULT_TOLERANCE, min_agreement: float = MIN_AGREEMENT) -> list[str]:
        found = []
        allowed = tolerance * max(1.0, self.logit_scale)
        if not self.max_abs_diff <= allowed:  # NaN fails too
            found.append(f"logits differ by up to {self.max_abs_diff:.3g} (allowed {allowed:.3g}: {tolerance:g} "
                         f"of the largest logit, {self.logit_scale:.3g})")
        # A face whose two best classes PyTorch itself tells apart by less than rounding may go
        # either way: only the other faces' flips count (one tie in 512 faces would fail 99.9 %).
        flips = sum(margin > allowed for margin in self.flip_margins)
        if self.faces and 1 - flips / self.faces < min_agreement:
            found.append(f"top-1 class agrees on {self.top1_agreement:.2%} of {self.faces} faces, {flips} of them "
                         f"flipped where PyTorch's two best classes are more than {allowed:.3g} apart "
                         f"(needed {min_agreement:.1%})")
        return found

    def metrics(self) -> dict[str, float]:
        return {f"onnx.{key}": float(value) for key, value in asdict(self).items() if key != "flip_margins"}


def onnx_bytes(model: nn.Module, config: Mapping[str, Any]) -> bytes:
    """The serialised ONNX model of ``model`` (float32, on the CPU; the caller's module is left as
    it is): input ``faces`` (batch, in_channels, input_size, input_size) with a dynamic batch axis,
    output ``logits``, the config in the metadata."""
    import onnx

    module = copy.deepcopy(model).float().cpu().eval()
    size, channels = int(config.get("input_size", IMAGE_SIZE)), int(config.get("in_channels", 1))
    example = torch.zeros(2, channels, size, size)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation notice and tracer warnings on `with_aux`
        torch.onnx.export(module, (example,), buffer, dynamo=False, opset_version=OPSET, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in readable_metadata(config).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = (f"fer_pipeline face emotion classifier ({config.get('arch')}, stem {config.get('stem')}): "
                        f"{', '.join(config.get('classes', []))}")
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def reference_logits(model: nn.Module, config: Mapping[str, Any], faces: np.ndarray) -> np.ndarray:
    """PyTorch float32 logits on the CPU of uint8 ``faces`` (N, H, W): what an export is checked against."""
    if not len(faces):
        raise ValueError("no faces to check the exported model on")
    return predict_logits(copy.deepcopy(model).float(), faces, dict(config), device="cpu", amp="off")


def compare(model: nn.Module, onnx_model: OnnxModel, config: Mapping[str, Any], faces: np.ndarray,
            reference: np.ndarray | None = None) -> Agreement:
    """``Agreement`` of ONNX Runtime with PyTorch float32 on the CPU on uint8 ``faces`` (N, H, W);
    ``reference``: ``reference_logits`` of them where already computed."""
    if reference is None:
        reference = reference_logits(model, config, faces)
    logits = onnx_model.predict_logits(faces)
    best_two = np.sort(reference, axis=1)[:, -2:]
    flipped = logits.argmax(1) != reference.argmax(1)
    return Agreement(faces=len(faces), max_abs_diff=float(np.abs(logits - reference).max()),
                     top1_agreement=float(1 - flipped.mean()), logit_scale=float(np.abs(reference).max()),
                     flip_margins=tuple(float(m) for m in (best_two[:, 1] - best_two[:, 0])[flipped]))


def convert(model: nn.Module, config: Mapping[str, Any], faces: np.ndarray, tolerance: float = DEFAULT_TOLERANCE,
            min_agreement: float = MIN_AGREEMENT, source: str = "the model",
            reference: np.ndarray | None = None) -> tuple[bytes, OnnxModel, Agreement]:
    """(ONNX bytes, their ``OnnxModel``, ``Agreement``) of ``model``, checked on ``faces`` (against
    ``reference``, their ``reference_logits``, where given); ``OnnxExportError`` when they disagree
    beyond ``tolerance`` / ``min_agreement``."""
    data = onnx_bytes(model, config)
    onnx_model = onnx_model_from_bytes(data, f"the ONNX export of {source}")
    agreement = compare(model, onnx_model, config, faces, reference)
    problems = agreement.problems(tolerance, min_agreement)
    if problems:
        raise OnnxExportError(f"the ONNX export of {source} does not agree with PyTorch on {agreement.faces} faces: "
                              f"{'; '.join(problems)}. Nothing was written; report this with your torch and "
                              "onnxruntime versions")
    return data, onnx_model, agreement


def export_onnx(model: nn.Module, config: Mapping[str, Any], out: str | os.PathLike, faces: np.ndarray,
                tolerance: float = DEFAULT_TOLERANCE, min_agreement: float = MIN_AGREEMENT,
                source: str = "the model") -> Agreement:
    """``convert``, then write the ONNX file to ``out`` atomically; nothing is written when it is refused."""
    data, _, agreement = convert(model, config, faces, tolerance, min_agreement, source)
    write_bytes(out, data)
    return agreement


def synthetic_faces(count: int = 32, seed: int = 0) -> np.ndarray:
    """``count`` drawn 48x48 grey faces of every class in turn (``demo.faces.draw_face``): faces to
    check a conversion on where no real ones are at hand."""
    from fer_pipeline.demo.faces import draw_face

    rng = np.random.default_rng(seed)
    return np.stack([draw_face(index % 7, rng, IMAGE_SIZE) for index in range(count)])


def onnx_model_from_module(model: nn.Module, config: Mapping[str, Any], faces: np.ndarray | None = None,
                           source: str = "the model") -> OnnxModel:
    """``model`` converted in memory and run by ONNX Runtime, checked (``convert``) on ``faces``
    (None: ``synthetic_faces``)."""
    return convert(model, config, synthetic_faces() if faces is None else faces, source=source)[1]




def spread(total: int, count: int) -> np.ndarray:
    """``min(count, total)`` indices spread evenly over ``range(total)`` (every class of a sorted listing)."""
    if not total:
        return np.zeros(0, dtype=int)
    return np.unique(np.linspace(0, total - 1, num=min(count, total)).round().astype(int))


def dataset_faces(dataset: Mapping[str, np.ndarray], count: int = CHECK_FACES, split: str = "val") -> np.ndarray:
    """Up to ``count`` faces of ``split`` of a canonical dataset (``fer_dataset``), spread over it;
    all its faces when it has no split at all (a dataset of faces only). A ``ValueError`` for a
    dataset with splits but none ``split``: calibrating on ``train`` must never take test faces."""
    images = np.asarray(dataset["images"])
    if "splits" in dataset:
        splits = np.asarray(dataset["splits"])
        if not (splits == split).any():
            raise ValueError(f"the dataset has no {split} faces (its splits: {', '.join(map(str, np.unique(splits)))})")
        images = images[splits == split]
    return images[spread(len(images), count)]
