"""An exported classifier run by ONNX Runtime: the ``onnxruntime`` back-end (``core.backends``).

    model = load_onnx_model("data/06_models/resnet34.onnx")
    model.config["classes"], model.config["input_size"]     # the .pt's config, from the file's metadata
    logits = model.predict_logits(crops, tta="none")         # (N, 48, 48) uint8 -> (N, K) float32

An ONNX file written by ``core.onnx_export`` holds the network (input ``faces``: float32
(batch, in_channels, input_size, input_size), dynamic batch; output ``logits``) and, in its
metadata, the model config of the ``.pt`` it came from (``CONFIG_KEY``: input size, normalisation,
classes, training data...) plus the same as readable fields (``readable_metadata``) for
programs other than this one. The preprocessing and TTA are ``core.inference.batched_logits``,
the torch back-end's: only the forward pass differs.

ONNX Runtime's CPU provider, one session per model, ``session_options``: as many intra-op
threads as the process may use cores (2 on the project's machines, as torch takes), one
inter-op thread (a ResNet is one chain of ops), and no spin-waiting between ops, which would
take a core from the threads that decode photos and find faces at the same time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fer_pipeline.core.inference import batched_logits
from fer_pipeline.core.model_files import ModelFileError

#: The metadata field holding the model config as JSON.
CONFIG_KEY = "fer_pipeline.config"
#: The network's input and output names.
INPUT_NAME, OUTPUT_NAME = "faces", "logits"
#: How an ONNX model is made, for the messages.
ONNX_ORIGIN = ("export one with `fer-export MODEL.pt OUT.onnx`; `kedro run` writes one beside the .pt "
               "(data/06_models/resnet34.onnx)")


class OnnxModel:
    """A classifier in an ONNX Runtime session, with the model config its file records."""

    backend = "onnxruntime"

    def __init__(self, session: Any, config: Mapping[str, Any], source: str = "<memory>") -> None:
        self.session, self.config, self.source = session, dict(config), source

    def __repr__(self) -> str:
        return f"OnnxModel({self.source!r}, classes={self.config.get('classes')})"

    def forward(self, view: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) normalised float32 faces -> (B, K) float32 logits."""
        faces = np.ascontiguousarray(view.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: faces})[0])

    def predict_logits(self, images: np.ndarray | torch.Tensor, tta: str = "none", batch_size: int = 256,
                       progress: bool = False) -> np.ndarray:
        """Logits (N, K) float32 of uint8 faces (N, H, W), TTA views averaged (``batched_logits``)."""
        return batched_logits(self.forward, images, self.config, tta=tta, batch_size=batch_size, device="cpu",
                              progress=progress)


def default_threads() -> int:
    """As many threads as torch uses in this process (its ``OMP_NUM_THREADS`` or the cores it may
    use), so that the two back-ends compare on the same cores and a process told to use one core
    (a test worker, a serving worker) is not given all of them by ONNX Runtime."""
    import torch

    return max(1, torch.get_num_threads())


def session_options(threads: int | None = None):  # -> onnxruntime.SessionOptions
    """CPU session options: ``threads`` intra-op threads (None: ``default_threads``), one
    inter-op thread, all graph optimisations, no spin-waiting (see the module's docstring)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise here
    return options


def onnx_model_from_bytes(data: bytes, source: str = "<memory>", threads: int | None = None) -> OnnxModel:
    """An ``OnnxModel`` of a serialised ONNX model; ``ModelFileError`` for bytes that are not an
    ONNX model of this project (``source`` names them in the message)."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(data, sess_options=session_options(threads),
                                       providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - onnxruntime's protobuf, graph and opset errors alike
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelFileError(f"{source} is not an ONNX model ONNX Runtime can load ({first[:200]}): "
                             f"{ONNX_ORIGIN}") from error
    return OnnxModel(session, recorded_config(session, source), source)


def load_onnx_model(path: str | os.PathLike, threads: int | None = None) -> OnnxModel:
    """The ``OnnxModel`` of the file at ``path``: ``FileNotFoundError`` when there is none,
    ``ModelFileError`` when it is not an ONNX model this project exported."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"ONNX model file not found: {path} ({ONNX_ORIGIN})")
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not an ONNX model file: {ONNX_ORIGIN}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ModelFileError(f"cannot read ONNX model file {path}: {error.strerror or error}") from error
    return onnx_model_from_bytes(data, str(path), threads)


def recorded_config(session: Any, source: str) -> dict[str, Any]:
    """The model config an exported file records (``CONFIG_KEY``), checked against the session's
    input and output; ``ModelFileError`` for an ONNX model that another program wrote."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != [INPUT_NAME] or OUTPUT_NAME not in [o.name for o in outputs]:
        raise ModelFileError(f"{source} is an ONNX model, but not a face classifier of this project (it takes "
                             f"{[i.name for i in inputs]}, not {[INPUT_NAME]}): {ONNX_ORIGIN}")
    text = session.get_modelmeta().custom_metadata_map.get(CONFIG_KEY)
    try:
        config = json.loads(text) if text else None
    except ValueError:
        config = None
    if not isinstance(config, dict) or not isinstance(config.get("classes"), list):
        raise ModelFileError(f"{source} is an ONNX model without this project's metadata ({CONFIG_KEY}: input "
                             f"size, normalisation, classes), so its input is unknown: {ONNX_ORIGIN}")
    return config


def readable_metadata(config: Mapping[str, Any]) -> dict[str, str]:
    """The metadata fields of an exported file (all strings, as ONNX stores them): the config as
    JSON (``CONFIG_KEY``, what ``load_onnx_model`` reads) and its parts a user of another program
    needs to feed the network and read its answer."""
    classes = list(config.get("classes", []))
    size, channels = int(config.get("input_size", 48)), int(config.get("in_channels", 1))
    training = config.get("training_data") or {}
    fields = {
        CONFIG_KEY: json.dumps(dict(config), sort_keys=True),
        "classes": json.dumps(classes),
        "input_size": str(size),
        "in_channels": str(channels),
        "mean": json.dumps(config.get("mean")),
        "std": json.dumps(config.get("std")),
        "preprocessing": (f"grey face crop (FER2013 framing), uint8 -> /255 -> centre crop (or resize) to "
                          f"{size}x{size} -> (x - mean) / std -> repeated to {channels} channel(s); "
                          f"input '{INPUT_NAME}' float32 (batch, {channels}, {size}, {size})"),
        "output": f"'{OUTPUT_NAME}' float32 (batch, {len(classes)}) in the order of classes; softmax for probabilities",
        "arch": str(config.get("arch", "")),
        "stem": str(config.get("stem", "")),
        "training_dataset_id": str(training.get("dataset_id") or ""),
        "training_split_sizes": json.dumps(training.get("split_sizes") or {}),
        "mlflow_run_id": str(config.get("mlflow_run_id") or ""),
    }
    return fields
