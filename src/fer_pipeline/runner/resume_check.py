"""Resumption checked on the training device: a short run stopped after an epoch and resumed
from its checkpoint is compared with the same run uninterrupted.

The tests prove this bit for bit on the CPU (``tests/core/training/test_train.py``); on a GPU the saved
state also carries the CUDA generator, cuDNN picks its kernels anew, and bf16 autocast rounds,
so the GPU runner (``--resume-check-steps``) measures it there: the largest difference of any
history value and of the final state (the last epoch's weights, EMA and optimiser, read from
each run's ``last.pt``), and whether the two runs are identical. Both runs use deterministic
kernels (on CUDA an op without one only warns), so a difference points at the resumed state
before kernel noise.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fer_pipeline.core.training.job import train_resnet
from fer_pipeline.runner.dataset_loading import subset_dataset

#: History columns that are timings, not results.
TIMING_KEYS = ("epoch_seconds", "images_per_s")


class _Stopped(Exception):
    """Raised by the first run's epoch callback: the run 'killed' after its checkpoint."""


def _short_params(training: Mapping[str, Any], epochs: int, steps: int, checkpoint_dir: Path | None):
    config = {**training["config"], "epochs": epochs, "steps_per_epoch": steps, "warmup_epochs": 1,
              "deterministic": True, "resume": True, "early_stopping_patience": None,
              "checkpoint_dir": checkpoint_dir.as_posix() if checkpoint_dir else None}
    # one process: the check is of one device's state, whatever the pipeline's process count
    return {**training, "config": config, "distributed": {**training.get("distributed", {}), "nproc_per_node": 1}}


def _history_difference(a: list[dict[str, float]], b: list[dict[str, float]]) -> float:
    if len(a) != len(b) or any(set(x) != set(y) for x, y in zip(a, b)):
        return math.inf
    return max((abs(float(x[k]) - float(y[k])) for x, y in zip(a, b) for k in x if k not in TIMING_KEYS),
               default=0.0)


def _state_difference(a: Any, b: Any) -> float:
    """The largest absolute difference between two nested states (dicts, lists, tensors, numbers)."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape:
            return math.inf
        return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        if a.keys() != b.keys():
            return math.inf
        return max((_state_difference(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return math.inf
        return max((_state_difference(x, y) for x, y in zip(a, b)), default=0.0)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(float(a) - float(b))
    return 0.0 if a == b else math.inf


def _final_state(folder: Path) -> dict[str, Any]:
    state = torch.load(folder / "last.pt", map_location="cpu", weights_only=True)
    return {key: state[key] for key in ("model", "ema", "optimizer")}


def check_resume(dataset: Mapping[str, np.ndarray], params: Mapping[str, Any], work: Path, steps: int,
                 epochs: int = 3, stop_after: int = 1, faces_per_split: int = 4096) -> dict[str, Any]:
    """Train ``epochs`` epochs of ``steps`` steps on at most ``faces_per_split`` faces of each split,
    with the pipeline's training and augmentation parameters: once uninterrupted, once stopped
    after epoch ``stop_after`` (its checkpoint written) and resumed. Returns the comparison."""
    if not 0 <= stop_after < epochs - 1:
        raise ValueError(f"stop_after {stop_after} must leave at least one epoch to resume (epochs {epochs})")
    small = subset_dataset(dataset, faces_per_split, seed=0)
    train = small["splits"] == "train"
    training_set = {"images": small["images"][train], "labels": small["labels"][train]}
    augmentation = params["augmentation"]
    folder = work / "resume_check"
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    uninterrupted = folder / "uninterrupted"
    reference = train_resnet(training_set, small, _short_params(params["training"], epochs, steps, uninterrupted),
                                    augmentation)

    def stop(epoch: int, row: dict[str, Any]) -> None:
        if epoch == stop_after:
            raise _Stopped

    resumable = _short_params(params["training"], epochs, steps, folder / "resumed")
    try:
        train_resnet(training_set, small, resumable, augmentation, on_epoch=stop)
        raise RuntimeError("the run to be stopped was not stopped")  # pragma: no cover - a callback bug
    except _Stopped:
        pass
    resumed = train_resnet(training_set, small, resumable, augmentation)
    final = _state_difference(_final_state(folder / "resumed"), _final_state(uninterrupted))
    kept = _state_difference(resumed.model.state_dict(), reference.model.state_dict())
    history = _history_difference(resumed.history, reference.history)
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "epochs": epochs, "steps_per_epoch": steps, "stopped_after_epoch": stop_after,
        "resumed_from_epoch": resumed.resumed_from_epoch, "train_faces": int(train.sum()),
        "device": resumed.device_info.get("name"), "autocast": resumed.device_info.get("autocast"),
        "deterministic": True, "best_epoch_equal": resumed.best_epoch == reference.best_epoch,
        "max_abs_final_state_difference": final, "max_abs_weight_difference": kept,
        "max_abs_history_difference": history,
        "identical": final == 0.0 and kept == 0.0 and history == 0.0 and resumed.best_epoch == reference.best_epoch,
        "seconds": time.perf_counter() - start,
    }
