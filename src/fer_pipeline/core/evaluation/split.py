"""The evaluate stage's work on one split: metrics as published and without the leaked faces, and
against any other label set of the same faces."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from fer_pipeline.core.classes import SPLIT_TO_FER_NAME
from fer_pipeline.core.config import reject_unknown_keys
from fer_pipeline.core.device import autocast_dtype_for, precision_name, resolve_device, synchronize
from fer_pipeline.core.evaluation.dataset_identity import check_trained_on
from fer_pipeline.core.evaluation.metrics import HEADLINE_KEYS, compute_metrics, without_leaked
from fer_pipeline.core.inference import predict_logits
from fer_pipeline.core.ingestion import extra_label_sets, label_set
from fer_pipeline.core.ingestion.dataset import Dataset, class_names, leaked_flags

EVALUATE_KEYS = ("split", "tta", "tta_candidates", "batch_size", "device", "model_run_id", "allow_dataset_mismatch", "label_sets",
                 "external_sets", "amp")


@dataclass
class SplitEvaluation:
    """What ``evaluate_split`` returns: the report, and the logits of the split's faces."""

    #: ``core.evaluation.metrics.compute_metrics`` + split, fer_split, tta, seconds, images_per_s,
    #: ``without_leaked_duplicates`` (``core.evaluation.metrics.without_leaked``; None when nothing leaked)
    #: and ``label_sets`` (``score_label_set`` per other label set, e.g. FER+ majority)
    report: dict[str, Any]
    #: (n, K) float32, in dataset order
    logits: np.ndarray
    #: which faces of the dataset are the split's
    mask: np.ndarray
    #: the split's faces under each other label set scored (``report["label_sets"]``), -1 = none
    label_sets: dict[str, np.ndarray] = field(default_factory=dict)


def evaluate_split(
    model: nn.Module,
    config: Mapping[str, Any],
    dataset: Dataset,
    split: str,
    tta: str,
    params: Mapping[str, Any],
    progress: bool = False,
    model_name: str = "the model",
) -> SplitEvaluation:
    """Score ``model`` on one split of ``dataset`` with one TTA mode: as published (every face)
    and without the faces flagged ``leaked`` (copies of training images, conflicting labels),
    from the same logits. ``params``: the evaluate stage's (``batch_size``, ``device``,
    ``allow_dataset_mismatch``). A model whose recorded training dataset is not ``dataset``
    raises ``DatasetMismatchError`` (naming ``model_name``) before anything is computed, unless
    that flag is set."""
    reject_unknown_keys(params, EVALUATE_KEYS, "evaluate")
    mask = dataset["splits"] == split
    if not mask.any():
        raise ValueError(f"split {split!r} is empty in this dataset (have: {sorted(set(dataset['splits']))})")
    dataset_check = check_trained_on(config, dataset, bool(params.get("allow_dataset_mismatch", False)), model_name)
    classes = class_names(dataset)
    labels = dataset["labels"][mask]
    device = resolve_device(params.get("device", "auto"))
    synchronize(device)
    start = time.perf_counter()
    amp = params.get("amp", "auto")
    logits = predict_logits(model, dataset["images"][mask], dict(config), tta=tta, batch_size=params["batch_size"],
                            device=device, progress=progress, amp=amp)
    synchronize(device)
    seconds = time.perf_counter() - start
    report = compute_metrics(labels, logits, classes)
    report.update(split=split, fer_split=SPLIT_TO_FER_NAME.get(split, split), tta=tta, seconds=seconds,
                  precision=precision_name(autocast_dtype_for(amp, device)),
                  images_per_s=float(mask.sum()) / seconds if seconds > 0 else None, dataset_check=dataset_check)
    report["without_leaked_duplicates"] = without_leaked(labels, logits, leaked_flags(dataset)[mask], classes)
    other_labels = {name: label_set(dataset, name, classes)[mask]
                    for name in extra_label_sets(dataset, params.get("label_sets", "auto"))}
    report["label_sets"] = {name: score_label_set(other, labels, logits, classes)
                            for name, other in other_labels.items()}
    return SplitEvaluation(report, logits, mask, other_labels)


def score_label_set(other: np.ndarray, own: np.ndarray, logits: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """The split's ``logits`` scored against ``other`` labels of the same faces (another label set:
    FER+ majority for a model trained on the contest labels, or the other way round; -1 where it
    gives none): headline metrics, per-class recall and confusion over the faces it labels, how
    many it leaves out, and how often it agrees with the dataset's ``own`` labels (the label
    noise between the two)."""
    scored = other >= 0
    if not scored.any():
        return {"n": 0, "excluded": int(len(other))}
    report = compute_metrics(other[scored], logits[scored], classes)
    return {
        "n": int(scored.sum()), "excluded": int((~scored).sum()),
        "agreement_with_dataset_labels": float((other[scored] == own[scored]).mean()),
        **{key: float(report[key]) for key in HEADLINE_KEYS},
        "recall": {row["class"]: float(row["recall"]) for row in report["per_class"]},
        "confusion": report["confusion"],
    }
