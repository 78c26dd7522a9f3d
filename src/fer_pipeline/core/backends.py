"""Which inference back-end runs the classifier: PyTorch or ONNX Runtime.

A light module (no torch, no onnxruntime import): the commands and the parameter checks use it
before anything heavy loads. ``torch`` runs the ``.pt`` model file (``core.models``);
``onnxruntime`` runs an ONNX file (``core.onnx_model``: written by ``fer-export`` or by training
beside the ``.pt``), or a ``.pt`` converted in memory when it loads (``core.onnx_export``). Both
share the preprocessing and TTA (``core.inference.batched_logits``): only the forward pass differs.
"""

from __future__ import annotations

import os
from pathlib import Path

BACKENDS: tuple[str, ...] = ("torch", "onnxruntime")
#: The suffix of an ONNX model file: such a file runs only with ONNX Runtime.
ONNX_SUFFIX = ".onnx"
# The export's check against PyTorch (core.onnx_export), here so that fer-export's --help needs no torch.
#: The largest difference allowed between a face's ONNX Runtime and PyTorch logits, relative to the
#: largest logit where that exceeds 1 (float32 rounding gives ~1e-6 on a trained model's logits).
DEFAULT_TOLERANCE = 1e-3
#: The least share of faces whose top-1 class must agree (the issue's 99.9 %).
MIN_AGREEMENT = 0.999
#: How many faces an export is checked on by default (the pipeline's node, fer-export).
CHECK_FACES = 512


def check_backend(backend: object, what: str = "backend") -> str:
    """``backend`` when it is one of ``BACKENDS``; else a ``ValueError`` naming them."""
    if backend not in BACKENDS:
        raise ValueError(f"{what} must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return str(backend)


def is_onnx_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ONNX_SUFFIX


def backend_for(path: str | os.PathLike, backend: str | None = None, what: str = "backend") -> str:
    """The back-end that runs the model file ``path``: ``backend`` when given (a ``.pt`` runs with
    either, converted to ONNX in memory for ``onnxruntime``), else the file's own (``.onnx``:
    ``onnxruntime``, any other: ``torch``). An ONNX file with ``torch`` is a ``ValueError``: it holds
    no PyTorch weights to run."""
    if backend is None:
        return "onnxruntime" if is_onnx_file(path) else "torch"
    backend = check_backend(backend, what)
    if backend == "torch" and is_onnx_file(path):
        raise ValueError(f"{path} is an ONNX model, which only ONNX Runtime runs: use {what} onnxruntime, "
                         "or give the .pt model file it was exported from to run it with torch")
    return backend


def check_backend_options(backend: str, device: object, amp: str, prefix: str = "") -> None:
    """ONNX Runtime runs the model float32 on the CPU: with ``backend`` onnxruntime, a ``device``
    other than auto/cpu or ``amp`` on (bf16, a mode of ``core.device.amp_mode``) is a ``ValueError``
    (``prefix``: the parameters' section, ``predict.``), not silently ignored."""
    if backend != "onnxruntime":
        return
    if str(device if device is not None else "auto") not in ("auto", "cpu"):
        raise ValueError(f"the onnxruntime back-end runs on the CPU: {prefix}device must be auto or cpu with it, "
                         f"got {device!r} (use the torch back-end for a GPU)")
    if amp == "on":
        raise ValueError(f"{prefix}amp on is torch's bf16 autocast; the onnxruntime back-end runs float32: "
                         f"use {prefix}amp auto or off with it, or the torch back-end")
