"""The ingestion stage's work: build the canonical dataset from a source, and the helpers that read it
(class names, the train split, the leaked flag) for the stages after it."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from fer_pipeline.core.classes import IMAGE_SIZE, SPLITS
from fer_pipeline.core.config import reject_unknown_keys
from fer_pipeline.core.ingestion import (
    DATASET_META_KEYS,
    IngestionResult,
    _check_options,
    apply_duplicate_policy,
    check_ferplus_settings,
    check_required_splits,
    detect_source_kind,
    find_duplicates,
    ingest,
    join_ferplus,
    leaked_mask,
    leaked_mask_from_groups,
    quality_report,
)

log = logging.getLogger(__name__)

#: The canonical dataset: images, labels, splits, classes, leaked (+ FER+ targets, label sets).
Dataset = Mapping[str, np.ndarray]


#: The ingestion and evaluate stages' parameters (conf/base/parameters_<stage>.yml): any other
#: key is a typo, rejected with a hint.
INGESTION_KEYS = ("source_path", "source_kind", "on_error", "colour", "size", "duplicates", "val_fraction",
                  "test_fraction", "seed", "required_splits", "workers", "demo", "ferplus_votes_path", "label_mode",
                  "ferplus_contempt")


def class_names(dataset: Dataset) -> list[str]:
    return [str(c) for c in dataset["classes"]]


def train_split(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The train split's (images, labels): the only faces the autoencoder and the sampler see."""
    train = dataset["splits"] == "train"
    return dataset["images"][train], dataset["labels"][train]


def leaked_flags(dataset: Dataset) -> np.ndarray:
    """The dataset's ``leaked`` flag (set at ingestion: what ``duplicates: drop_leaked`` would
    remove); found from the pixels for a dataset written before the flag was stored."""
    if "leaked" in dataset:
        return np.asarray(dataset["leaked"], dtype=bool)
    log.warning("the dataset has no 'leaked' flag (ingested by an older version): finding duplicates "
                "from the pixels; run the ingestion stage again to store it")
    return leaked_mask(dataset["images"], dataset["labels"], dataset["splits"])


def build_dataset(
    source: str | os.PathLike, params: Mapping[str, Any], kind: str | None = None, progress: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read ``source`` (a FER2013 folder, the contest CSV or an ImageFolder tree), find its
    duplicates and apply ``params["duplicates"]``. Returns (the dataset: arrays of images,
    labels, splits, source ids and the ``leaked`` flag of every face it keeps; the full
    ``core.ingestion.quality_report``). ``kind`` defaults to ``params["source_kind"]``; the caller adds its own
    report keys (``source_path``, ...). Raises ``IngestionError`` (reasons counted) when no face
    of a split in ``params["required_splits"]`` (default: all three) was kept."""
    kind = params["source_kind"] if kind is None else kind
    label_settings = check_ingestion_params(params, source, kind)
    result = ingest(
        source,
        kind=kind,
        on_error=params["on_error"],
        colour=params["colour"],
        size=params["size"],
        val_fraction=params["val_fraction"],
        test_fraction=params["test_fraction"],
        seed=params["seed"],
        workers=params["workers"],
        progress=progress,
    )
    result = _with_label_mode(result, label_settings)
    duplicates = find_duplicates(result.images, result.labels, result.splits, result.byte_hashes)
    keep, dropped = apply_duplicate_policy(result, duplicates, params["duplicates"])
    report = quality_report(result, duplicates, keep, dropped, policy=params["duplicates"])
    check_required_splits(report, params.get("required_splits", SPLITS))
    arrays = {**result.as_arrays(), "leaked": leaked_mask_from_groups(duplicates["members"], result.labels,
                                                                     result.splits)}
    dataset = {key: value if key in DATASET_META_KEYS else value[keep] for key, value in arrays.items()}
    return dataset, report


def check_ingestion_params(
    params: Mapping[str, Any], source: str | os.PathLike | None = None, kind: str | None = None
) -> dict[str, Any]:
    """``build_dataset``'s checks of ``params``, made before any image is decoded (and by the Kedro
    hook ``ParameterChecks`` before a run's first node): unknown keys, the options' values and the
    label settings, which are returned. ``source`` None (not there yet: the demo draws its faces in
    the run) leaves out what needs it (FER+ votes need the contest CSV: the source's kind)."""
    reject_unknown_keys(params, INGESTION_KEYS, "ingestion")
    kind = params["source_kind"] if kind is None else kind
    _check_options(kind, params["on_error"], params["colour"], params["size"], IMAGE_SIZE, params["val_fraction"],
                   params["test_fraction"])
    return _label_settings(params, source, kind)


def _label_settings(params: Mapping[str, Any], source: str | os.PathLike | None, kind: str) -> dict[str, Any]:
    """The label parameters, checked before any image is decoded (``ferplus.check_settings``)."""
    settings = {"votes_path": params.get("ferplus_votes_path"), "mode": params.get("label_mode", "fer2013"),
                "contempt": params.get("ferplus_contempt", "exclude")}
    source_kind = None
    if settings["votes_path"] and kind != "auto":
        source_kind = kind
    elif settings["votes_path"] and source is not None:
        source_kind = detect_source_kind(source)
    check_ferplus_settings(settings["mode"], settings["contempt"], settings["votes_path"], source_kind)
    return settings


def _with_label_mode(result: IngestionResult, settings: Mapping[str, Any]) -> IngestionResult:
    """The ingested faces under the label mode: FER+ votes joined when a votes file is set
    (``core.ingestion.ferplus``); the contest labels otherwise."""
    if not settings["votes_path"]:
        return result
    joined = join_ferplus(result, settings["votes_path"], settings["mode"], settings["contempt"])
    log.info("FER+ votes from %s joined, label mode %s: kept %d of %d faces", settings["votes_path"],
             settings["mode"], joined.kept, result.kept)
    return joined
