"""Each pipeline stage's work, once, for the Kedro nodes and for the runner without Kedro.

Every function here is one stage's work on plain dicts of NumPy arrays and parameter dicts
(``conf/base/parameters_*.yml``). The Kedro nodes (``fer_pipeline.pipelines.<stage>.nodes``)
call one of them each and add the catalog's shapes around the result (MLflow metrics, pandas
tables, figures); ``fer_pipeline.runner`` and ``fer_pipeline.ablation`` call the same functions
and write their own records. So ``kedro run`` and the runner train and measure the same thing.

Only NumPy / torch / the rest of ``core`` at module level (no kedro, mlflow, pandas or
matplotlib).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from . import autoencoder as ae
from . import class_balance as cb
from .augment import sampling_weights
from .classes import SPLIT_TO_FER_NAME, SPLITS
from .config import reject_unknown_keys
from .dataset_identity import check_trained_on, training_data_record
from .device import amp_mode, autocast_dtype_for, device_info, precision_name, resolve_device, synchronize
from .distributed import DistributedConfig, in_worker
from .inference import TTA_MODES, predict_logits
from .ingestion import (
    DATASET_META_KEYS,
    IngestionResult,
    apply_duplicate_policy,
    check_ferplus_settings,
    check_required_splits,
    detect_source_kind,
    extra_label_sets,
    find_duplicates,
    ingest,
    join_ferplus,
    label_set,
    leaked_mask,
    leaked_mask_from_groups,
    quality_report,
)
from .metrics import HEADLINE_KEYS, compute_metrics, without_leaked
from .predict import CASCADE_WINDOW
from .train import TrainResult, train_classifier
from .training_job import train_in_workers

log = logging.getLogger(__name__)

Dataset = Mapping[str, np.ndarray]

#: Autoencoder-stage parameters that are not ``AutoencoderConfig`` fields.
AUTOENCODER_STAGE_KEYS = ("compare_unweighted", "oversampling")
#: The groups of params:training (each group is then checked by its own config class).
TRAINING_KEYS = ("model", "config", "distributed")
#: The ingestion and evaluate stages' parameters (conf/base/parameters_<stage>.yml): any other
#: key is a typo, rejected with a hint.
INGESTION_KEYS = ("source_path", "source_kind", "on_error", "colour", "size", "duplicates", "val_fraction",
                  "test_fraction", "seed", "required_splits", "workers", "demo", "ferplus_votes_path", "label_mode",
                  "ferplus_contempt")
EVALUATE_KEYS = ("split", "tta", "batch_size", "device", "model_run_id", "allow_dataset_mismatch", "label_sets",
                 "external_sets", "amp")
#: The predict stage's parameters (conf/base/parameters_predict.yml).
PREDICT_KEYS = ("inputs", "margin", "tta", "device", "amp", "detect_max_side", "workers", "every_n_frames",
                "demo_photos")


def check_predict_params(params: Mapping[str, Any]) -> None:
    """Typos and bad values in params:predict fail at the stage's first node, before a photo is
    read or a model loaded, not when the first video (or face) reaches the bad value."""
    reject_unknown_keys(params, PREDICT_KEYS, "predict")
    amp_mode(params.get("amp", "auto"))
    if params.get("tta", "none") not in TTA_MODES:
        raise ValueError(f"predict.tta must be one of {', '.join(TTA_MODES)}, got {params.get('tta')!r}")
    for key, default, least in (("margin", 0.2, 0), ("every_n_frames", 1, 1), ("workers", None, 1),
                                ("detect_max_side", None, 0)):
        value = params.get(key, default)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < least):
            raise ValueError(f"predict.{key} must be a number >= {least}" + (" or null" if default is None else "")
                             + f", got {value!r}")
    if not isinstance(params.get("every_n_frames", 1), int):
        raise ValueError(f"predict.every_n_frames must be a whole number, got {params['every_n_frames']!r}")
    side = params.get("detect_max_side")
    if side and side < CASCADE_WINDOW:
        raise ValueError(f"predict.detect_max_side must be 0/null (full resolution) or >= {CASCADE_WINDOW} "
                         f"(the face detector's window), got {side!r}")


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


# ============================================================================================
# Ingestion
# ============================================================================================

def build_dataset(
    source: str | os.PathLike, params: Mapping[str, Any], kind: str | None = None, progress: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read ``source``, find duplicates, apply ``params["duplicates"]``: (canonical dataset,
    full ``core.ingestion.quality_report``). The dataset carries the ``leaked`` flag of every
    face it keeps. ``kind`` defaults to ``params["source_kind"]``; the caller adds its own
    report keys (``source_path``, ...). Raises ``IngestionError`` (reasons counted) when no face
    of a split in ``params["required_splits"]`` (default: all three) was kept."""
    reject_unknown_keys(params, INGESTION_KEYS, "ingestion")
    kind = params["source_kind"] if kind is None else kind
    label_settings = _label_settings(params, source, kind)
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


def _label_settings(params: Mapping[str, Any], source: str | os.PathLike, kind: str) -> dict[str, Any]:
    """The label parameters, checked before any image is decoded (``ferplus.check_settings``)."""
    settings = {"votes_path": params.get("ferplus_votes_path"), "mode": params.get("label_mode", "fer2013"),
                "contempt": params.get("ferplus_contempt", "exclude")}
    source_kind = (detect_source_kind(source) if kind == "auto" else kind) if settings["votes_path"] else None
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


# ============================================================================================
# Class balance
# ============================================================================================

def class_balance_summary(dataset: Dataset, params: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict]]:
    """(summary, split/class table rows). The summary: classes, train counts, ``beta``, the
    inverse-frequency and effective-number class weights and log-priors of the train counts,
    and ``imbalance_ratio`` per non-empty split (inf where a class is missing from it)."""
    classes = class_names(dataset)
    labels, splits = dataset["labels"], dataset["splits"]
    train_counts = cb.class_counts(labels[splits == "train"], len(classes))
    summary: dict[str, Any] = {
        "classes": classes,
        "train_counts": train_counts.tolist(),
        "beta": params["beta"],
        "inverse_frequency": cb.inverse_frequency_weights(train_counts).tolist(),
        "effective_number": cb.effective_number_weights(train_counts, params["beta"]).tolist(),
        "log_priors": cb.log_priors(train_counts).tolist(),
        "imbalance_ratio": {},
    }
    for split in SPLITS:
        counts = cb.class_counts(labels[splits == split], len(classes))
        if counts.sum() == 0:
            continue
        summary["imbalance_ratio"][split] = float(counts.max() / counts.min()) if counts.min() > 0 else float("inf")
    return summary, cb.split_class_table(labels, splits, classes)


# ============================================================================================
# Autoencoder and latent-SMOTE oversampling
# ============================================================================================

def autoencoder_config(params: Mapping[str, Any], **overrides: Any) -> ae.AutoencoderConfig:
    """``AutoencoderConfig`` from the autoencoder stage's parameters: the stage's own keys
    (``AUTOENCODER_STAGE_KEYS``) are set aside, any other unknown key is an error with a hint."""
    fields = {k: v for k, v in params.items() if k not in AUTOENCODER_STAGE_KEYS}
    return ae.AutoencoderConfig.from_dict({**fields, **overrides})


def autoencoder_epoch_logger(params: Mapping[str, Any]) -> Callable[[int, Mapping[str, Any]], None]:
    """An ``on_epoch`` for ``train_autoencoder`` that logs each epoch's loss and rate (for runs
    without Kedro, whose nodes show a progress bar instead)."""
    epochs = autoencoder_config(params).epochs

    def on_epoch(epoch: int, row: Mapping[str, Any]) -> None:
        log.info("autoencoder epoch %d/%d: loss %.5f (%.0f img/s)", epoch, epochs, row["loss"], row["images_per_s"])

    return on_epoch


@dataclass
class AutoencoderRun:
    """What ``train_autoencoder`` returns."""

    model: ae.ConvAutoencoder
    config: ae.AutoencoderConfig
    history: list[dict]
    #: the unweighted twin's history; None when no twin ran
    twin_history: list[dict] | None
    #: one row per class: class, n, mse_<weighting>, mae_<weighting> (+ mse_none, mae_none,
    #: mse_change_pct when the twin ran)
    errors: list[dict]
    #: peak CUDA memory of the main training (MiB); None off CUDA
    peak_memory_mb: float | None = None
    #: what it ran on (``core.device.device_info``)
    device_info: dict[str, Any] | None = None


def train_autoencoder(
    dataset: Dataset,
    params: Mapping[str, Any],
    twin: bool | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    progress: bool = False,
) -> AutoencoderRun:
    """Train on the train split only, then the per-class reconstruction errors on it. With
    ``twin`` (default ``params["compare_unweighted"]``) and a weighting other than none, an
    unweighted twin is trained too and its errors join the table for comparison."""
    classes = class_names(dataset)
    images, labels = train_split(dataset)
    cfg = autoencoder_config(params)
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model, history = ae.train_autoencoder(images, labels, cfg, on_epoch=on_epoch, progress=progress, classes=classes)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    errors = [
        {"class": row["class"], "n": row["n"], f"mse_{cfg.weighting}": row["mse"], f"mae_{cfg.weighting}": row["mae"]}
        for row in ae.per_class_reconstruction_error(model, images, labels, classes, device=cfg.device)
    ]
    twin_history = None
    if (params.get("compare_unweighted") if twin is None else twin) and cfg.weighting != "none":
        twin_model, twin_history = ae.train_autoencoder(
            images, labels, autoencoder_config(params, weighting="none"), progress=progress, classes=classes
        )
        twin_errors = ae.per_class_reconstruction_error(twin_model, images, labels, classes, device=cfg.device)
        del twin_model
        for row, twin_row in zip(errors, twin_errors):
            row["mse_none"], row["mae_none"] = twin_row["mse"], twin_row["mae"]
            with np.errstate(divide="ignore", invalid="ignore"):  # NaN / inf as pandas gives them
                ratio = np.float64(row[f"mse_{cfg.weighting}"]) / np.float64(twin_row["mse"])
            row["mse_change_pct"] = float(100.0 * (ratio - 1.0))
    ran_on = {**device_info(device), "autocast": precision_name(autocast_dtype_for(cfg.amp, device)), "amp": cfg.amp}
    return AutoencoderRun(model, cfg, history, twin_history, errors, peak, ran_on)


def oversample(
    dataset: Dataset, model: ae.ConvAutoencoder | str | os.PathLike, params: Mapping[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Latent SMOTE on the train split up to ``oversampling_targets`` (``params["oversampling"]``):
    (synthetic set, info with ``targets`` and ``added`` per class). ``model``: the autoencoder,
    or its file (loaded only when oversampling is enabled)."""
    classes = class_names(dataset)
    images, labels = train_split(dataset)
    options = params["oversampling"]
    counts = np.bincount(labels, minlength=len(classes))
    if options.get("enabled", True):
        if not isinstance(model, torch.nn.Module):
            model = ae.load_autoencoder(model)
        targets = ae.oversampling_targets(counts, options["fraction_of_largest"])
        synth_images, synth_labels = ae.latent_smote(
            model, images, labels, targets, k=options["k"], seed=options["seed"], device=params.get("device", "auto")
        )
    else:
        targets = counts
        synth_images = np.zeros((0, *images.shape[1:]), dtype=np.uint8)
        synth_labels = np.zeros(0, dtype=np.int64)
    synthetic = {"images": synth_images, "labels": synth_labels.astype(np.int64), "classes": np.array(classes)}
    added = np.bincount(synthetic["labels"], minlength=len(classes))
    info = {"targets": dict(zip(classes, np.asarray(targets).tolist())), "added": dict(zip(classes, added.tolist()))}
    return synthetic, info


# ============================================================================================
# Augmentation: the classifier's training set
# ============================================================================================

def assemble_training_set(
    dataset: Dataset, synthetic: Dataset | None, params: Mapping[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Real train faces plus, when ``params["use_synthetic"]``, the synthetic ones: (training
    set, info: size, synthetic count, counts and expected sampled share per class under
    ``params["sampler"]``, the sampler). A dataset with soft targets (FER+
    ``ferplus_probability``) gives the training set ``targets`` too."""
    classes = class_names(dataset)
    train = dataset["splits"] == "train"
    images, labels = [dataset["images"][train]], [dataset["labels"][train]]
    flags = [np.zeros(int(train.sum()), dtype=bool)]
    if params["use_synthetic"]:
        if synthetic is None:
            raise ValueError("augmentation.use_synthetic is true but no synthetic faces were made")
        if len(synthetic["labels"]):
            images.append(synthetic["images"])
            labels.append(synthetic["labels"])
            flags.append(np.ones(len(synthetic["labels"]), dtype=bool))
    training_set = {
        "images": np.concatenate(images),
        "labels": np.concatenate(labels).astype(np.int64),
        "synthetic": np.concatenate(flags),
        "classes": np.array(classes),
    }
    if "targets" in dataset:
        # FER+ vote distributions for the real faces; a synthetic face's target is its own class.
        one_hot = np.eye(len(classes), dtype=np.float32)
        synthetic_labels = training_set["labels"][int(train.sum()):]
        training_set["targets"] = np.concatenate([dataset["targets"][train].astype(np.float32),
                                                  one_hot[synthetic_labels]])
    # What one epoch looks like to the model under the chosen sampler (expected class shares).
    weights = sampling_weights(training_set["labels"], params["sampler"])
    counts = np.bincount(training_set["labels"], minlength=len(classes)).astype(float)
    shares = counts if weights is None else np.bincount(training_set["labels"], weights=weights,
                                                        minlength=len(classes))
    shares = shares / shares.sum()
    info = {
        "training_set_size": int(len(training_set["labels"])),
        "synthetic_faces": int(training_set["synthetic"].sum()),
        "counts": dict(zip(classes, counts.astype(int).tolist())),
        "sampled_share": dict(zip(classes, shares.tolist())),
        "sampler": params["sampler"],
    }
    return training_set, info


# ============================================================================================
# Training
# ============================================================================================

def train_resnet(
    training_set: Dataset,
    dataset: Dataset,
    training_params: Mapping[str, Any],
    augmentation_params: Mapping[str, Any],
    on_epoch: Callable[[int, dict], None] | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train on ``training_set``, keep the best epoch by the val split's metric. The result's
    ``config`` is the model file's (with the dataset's class names); ``train_config`` the
    training parameters as run; ``config["training_data"]`` identifies ``dataset``
    (``core.dataset_identity``). The test split is never passed to the trainer.

    ``training_params["distributed"]["nproc_per_node"]`` > 1 trains in that many worker processes
    (``core.training_job``, data-parallel with the same global batch); inside a torchrun worker
    (``fer-train``) this process is one rank of the job."""
    reject_unknown_keys(training_params, TRAINING_KEYS, "training")
    classes = class_names(dataset)
    val = dataset["splits"] == "val"
    if not val.any():
        raise ValueError("the dataset has no validation split: model selection needs one")
    train_cfg = {**training_params["config"], "sampler": augmentation_params["sampler"]}
    model_cfg = {**training_params["model"], "num_classes": len(classes), "classes": classes}
    counts = np.bincount(training_set["labels"], minlength=len(classes))
    # Soft targets (FER+ vote distributions) when the training set has them, else the class labels.
    targets = training_set["targets"] if "targets" in training_set else training_set["labels"]
    inputs = (training_set["images"], targets, dataset["images"][val], dataset["labels"][val],
              counts, model_cfg, train_cfg, augmentation_params["policy"])
    distributed = DistributedConfig.from_dict(training_params.get("distributed"))
    if distributed.nproc_per_node > 1 and not in_worker():
        result = train_in_workers(*inputs, distributed, on_epoch=on_epoch)
    else:  # one process, or one rank of a torchrun job (fer-train)
        result = train_classifier(*inputs, on_epoch=on_epoch, progress=progress)
    # Evaluation checks it: a model is scored on the dataset it was trained on unless told otherwise.
    result.config["training_data"] = training_data_record(dataset)
    return result


# ============================================================================================
# Evaluation
# ============================================================================================

@dataclass
class SplitEvaluation:
    """What ``evaluate_split`` returns: the report, and the logits of the split's faces."""

    #: ``core.metrics.compute_metrics`` + split, fer_split, tta, seconds, images_per_s,
    #: ``without_leaked_duplicates`` (``core.metrics.without_leaked``; None when nothing leaked)
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
