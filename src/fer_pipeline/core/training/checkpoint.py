"""Resumable training checkpoints: every RNG state, a fingerprint of config and data, atomic writes.

A checkpoint is a plain dict of tensors and Python values written with ``torch.save`` and read
with ``torch.load(weights_only=True)``, so loading one can never run code: RNG states are
stored as tensors / plain values (NumPy's key as an int64 tensor). ``core.training.loop`` writes one
after every epoch and resumes from it only when its fingerprint matches the run's.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_pipeline.files import atomic_path

log = logging.getLogger(__name__)

#: Bumped when the checkpoint layout changes; part of the fingerprint, so older files are not resumed.
CHECKPOINT_VERSION = 1


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (the ones a checkpoint restores)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """torch (CPU and every CUDA device), NumPy, Python and ``generator`` states, weights_only-safe."""
    np_state = np.random.get_state(legacy=False)
    np_state["state"]["key"] = torch.from_numpy(np_state["state"]["key"].astype(np.int64))
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np_state,
        "python": random.getstate(),
        "sampler": generator.get_state(),
    }


def set_rng_state(state: Mapping[str, Any], generator: torch.Generator) -> None:
    """Inverse of ``rng_state``; CUDA states are restored only on a machine with as many devices."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = copy.deepcopy(state["numpy"])
    np_state["state"]["key"] = np_state["state"]["key"].numpy().astype(np.uint32)
    np.random.set_state(np_state)
    python_state = state["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    generator.set_state(state["sampler"])


def fingerprint(*parts: Any) -> str:
    """sha256 of arrays (dtype, shape, bytes) and JSON-able values: what a checkpoint must match."""
    digest = hashlib.sha256()
    for part in (CHECKPOINT_VERSION, *parts):
        if isinstance(part, np.ndarray):
            digest.update(str((part.dtype, part.shape)).encode())
            digest.update(np.ascontiguousarray(part).data)
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def atomic_save(payload: Any, path: str | os.PathLike) -> None:
    """``torch.save``, atomically (``files.atomic_path``): a killed write never leaves half a file."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``module``'s state dict (kept while training goes on)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def load_matching(path: str | os.PathLike, expected_fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` when it exists and was written by the same configuration and
    data (same fingerprint); None otherwise (a mismatch is logged: the run starts from scratch)."""
    path = Path(path)
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("fingerprint") != expected_fingerprint:
        log.warning("%s was written by another configuration or dataset: starting from scratch", path)
        return None
    return state
