"""Which dataset a model was trained on, and the check that evaluation scores it on that one.

A model file records ``training_data`` (``training_data_record``): the ``dataset_id`` of the
canonical dataset it was trained on and that dataset's split sizes. Evaluation compares it with
the dataset it is asked to score (``check_trained_on``), so a demo model is never scored on
FER2013 (or a model on a re-ingested dataset with other splits) without the user saying so.

The id hashes what identifies the faces, not their pixels: the class names, every face's source
id (its path relative to the source root, or its CSV row), label and split, in dataset order.
Pixels would make the id depend on the JPEG decoder (OpenCV here, Pillow on a machine without
it) although the faces are the same; the same file names with other labels, splits or counts
(the demo against FER2013) give another id.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from fer_pipeline.core.classes import SPLITS

log = logging.getLogger(__name__)

#: The parameter that lets evaluation score a model on a dataset it was not trained on.
OVERRIDE_PARAMETER = "evaluate.allow_dataset_mismatch"


class DatasetMismatchError(ValueError):
    """A model is asked to score a dataset other than the one it was trained on."""


def dataset_id(dataset: Mapping[str, np.ndarray]) -> str:
    """A short sha256 (16 hex digits) of the dataset's class names, source ids, labels and splits."""
    digest = hashlib.sha256()
    for key in ("classes", "source_ids", "labels", "splits"):
        values = np.asarray(dataset[key])
        # One line per value: "\n" cannot occur in a source id, so the encoding is unambiguous.
        digest.update(f"{key}:{len(values)}\n".encode())
        digest.update("\n".join(str(v) for v in values.tolist()).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def split_sizes(dataset: Mapping[str, np.ndarray]) -> dict[str, int]:
    splits = np.asarray(dataset["splits"])
    return {split: int((splits == split).sum()) for split in SPLITS}


def training_data_record(dataset: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """What a model file stores of the dataset it was trained on."""
    return {"dataset_id": dataset_id(dataset), "split_sizes": split_sizes(dataset)}


def _describe(dataset_key: str, sizes: Mapping[str, int]) -> str:
    return f"dataset {dataset_key} ({', '.join(f'{sizes.get(s, 0):,} {s}' for s in SPLITS)} faces)"


def check_trained_on(model_config: Mapping[str, Any], dataset: Mapping[str, np.ndarray],
                     allow_mismatch: bool = False, model_name: str = "the model") -> dict[str, Any]:
    """Compare the model's ``training_data`` with ``dataset``; return the outcome for the report
    (``status``: ``match`` / ``mismatch_allowed`` / ``unrecorded_allowed``, both ids). A mismatch
    raises ``DatasetMismatchError`` unless ``allow_mismatch``; so does a model that records no
    dataset (written before models recorded it): nothing shows it was trained on this one, and
    the old demo model in a real run's place is exactly such a file."""
    recorded = model_config.get("training_data") or {}
    current = training_data_record(dataset)
    outcome = {"dataset_id": current["dataset_id"], "model_dataset_id": recorded.get("dataset_id")}
    to_score = _describe(current["dataset_id"], current["split_sizes"])
    if not recorded.get("dataset_id"):
        status = "unrecorded_allowed"
        message = (
            f"{model_name} records no training dataset (written before model files recorded it), so nothing "
            f"shows that it was trained on the dataset to score, {to_score}. Train it again on this dataset, "
            "or, if you know it was trained on it (or want a cross-dataset score), "
            f"pass `--params {OVERRIDE_PARAMETER}=true`."
        )
    elif recorded["dataset_id"] == current["dataset_id"]:
        return {**outcome, "status": "match"}
    else:
        status = "mismatch_allowed"
        message = (
            f"{model_name} was trained on {_describe(recorded['dataset_id'], recorded.get('split_sizes', {}))}, "
            f"but the dataset to score is {to_score}. Its scores would not be the model's on the data it was "
            "built for (a demo model scored on FER2013, or faces it was trained on counted as test faces). "
            "Train a model on this dataset, re-ingest the data the model was trained on, or, to score it on "
            f"this dataset anyway (a cross-dataset check), pass `--params {OVERRIDE_PARAMETER}=true`."
        )
    if not allow_mismatch:
        raise DatasetMismatchError(message)
    log.warning("%s (%s=true: scoring it anyway)", message, OVERRIDE_PARAMETER)
    return {**outcome, "status": status}
