"""Batched inference with test-time augmentation, metrics, calibration and evaluation plots.

Inference (``predict_logits``) needs only torch/torchvision. Metrics import scikit-learn and
plots import matplotlib lazily, inside the functions that use them.

Preprocessing follows the model config (``core.models.model_config``): uint8 faces -> [0, 1]
-> crop/resize to ``input_size`` -> ``(x - mean) / std`` -> repeated to 3 channels when
``in_channels == 3``. Test-time augmentation (TTA) views are run one at a time (so memory
does not grow with the number of views) and their logits are averaged:

* ``none``: the centre crop of side ``input_size`` (the whole face when input_size is 48).
* ``flip``: the centre crop and its horizontal mirror (2 views).
* ``ten_crop``: torchvision's ten_crop: 4 corner + centre crops and their mirrors (10 views).
  When ``input_size`` is smaller than the face (44 of 48) the crops are taken at input_size,
  exactly the crops the random-crop training augmentation could have produced. When the model
  takes the whole face (input_size 48) there is nothing to crop, so the crops are taken at
  ``round(48 * 44/48) = 44`` px and resized back (bilinear) to input_size: a 1.09x zoom with
  at most a 4 px shift, inside the range of shift/scale augmentation used in training.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .classes import CLASSES
from .data import MEAN, STD, resolve_device, to_float

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

try:
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover - tqdm is optional on the GPU box
    tqdm = None

TTA_MODES: tuple[str, ...] = ("none", "flip", "ten_crop")

#: Crop side relative to the face for ten_crop when the model takes the whole 48 px face.
TEN_CROP_RATIO = 44 / 48

#: Number of equal-width confidence bins for ECE and the reliability diagram.
ECE_BINS = 15


# --------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------


def _config_input_size(config: dict, image_size: int) -> int:
    size = config.get("input_size", image_size)
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise ValueError(f"only square inputs are supported, got input_size={size}")
        size = size[0]
    return int(size)


def _crop_or_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Centre crop to ``size`` when the image is larger, bilinear resize when it is smaller."""
    from torchvision.transforms.v2 import functional as TF

    height = x.shape[-1]
    if height > size:
        return TF.center_crop(x, [size, size])
    if height < size:
        return TF.resize(x, [size, size], antialias=False)
    return x


def _tta_views(x: torch.Tensor, input_size: int, tta: str) -> list[torch.Tensor]:
    """[0,1] float batch (B,1,H,W) -> the list of views whose logits are averaged."""
    from torchvision.transforms.v2 import functional as TF

    if tta == "none":
        return [_crop_or_resize(x, input_size)]
    if tta == "flip":
        center = _crop_or_resize(x, input_size)
        return [center, TF.horizontal_flip(center)]
    if tta == "ten_crop":
        image_size = x.shape[-1]
        if input_size < image_size:
            return list(TF.ten_crop(x, [input_size, input_size]))
        crop = round(image_size * TEN_CROP_RATIO)
        crops = TF.ten_crop(x, [crop, crop])
        return [TF.resize(c, [input_size, input_size], antialias=False) for c in crops]
    raise ValueError(f"tta must be one of {TTA_MODES}, got {tta!r}")


def _normalizer(config: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    in_channels = int(config.get("in_channels", 1))
    mean = torch.as_tensor(config.get("mean", MEAN), dtype=torch.float32, device=device).reshape(1, -1, 1, 1)
    std = torch.as_tensor(config.get("std", STD), dtype=torch.float32, device=device).reshape(1, -1, 1, 1)
    return mean, std, in_channels


def predict_logits(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    config: dict,
    tta: str = "none",
    batch_size: int = 256,
    device: str | torch.device | None = "auto",
    progress: bool = False,
    channels_last: bool = True,
    bf16: bool | None = None,
) -> np.ndarray:
    """Logits (N, K) float32 for uint8 faces (N,H,W) or (N,1,H,W), TTA views averaged.

    The model is put in eval mode and moved to ``device`` (and channels_last memory format,
    which is faster for convolutions on CUDA and on CPU). ``bf16``: bfloat16 autocast;
    ``None`` = on for CUDA, off for CPU (CPUs with AVX512-BF16/AMX run it ~1.5x faster, at a
    small numeric cost, so it is opt-in there).
    """
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, got {tta!r}")
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise TypeError(f"faces must be uint8, got {images.dtype}")
        images = torch.from_numpy(np.ascontiguousarray(images))
    elif images.dtype != torch.uint8:
        raise TypeError(f"faces must be uint8, got {images.dtype}")
    if images.dim() == 4:
        images = images[:, 0]
    if images.dim() != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"expected square faces (N,H,W), got shape {tuple(images.shape)}")

    device = resolve_device(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.eval()
    model.to(device=device, memory_format=memory_format)
    input_size = _config_input_size(config, int(images.shape[-1]))
    mean, std, in_channels = _normalizer(config, device)
    use_autocast = device.type == "cuda" if bf16 is None else bool(bf16)

    num_images = int(images.shape[0])
    starts = range(0, num_images, batch_size)
    if progress and tqdm is not None:
        starts = tqdm(starts, total=math.ceil(num_images / batch_size), desc=f"predict (tta={tta})", unit="batch")

    outputs: list[torch.Tensor] = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_autocast):
        for start in starts:
            batch = to_float(images[start : start + batch_size].to(device, non_blocking=True))
            logits_sum = None
            views = _tta_views(batch, input_size, tta)
            for view in views:
                if mean.shape[1] == 1:
                    view = (view - mean) / std
                if in_channels != view.shape[1]:
                    view = view.expand(-1, in_channels, -1, -1)
                if mean.shape[1] != 1:
                    view = (view - mean) / std
                view = view.contiguous(memory_format=memory_format)
                logits = model(view).float()
                logits_sum = logits if logits_sum is None else logits_sum + logits
            outputs.append((logits_sum / len(views)).cpu())
    if not outputs:
        num_classes = int(config.get("num_classes", len(config.get("classes", CLASSES))))
        return np.zeros((0, num_classes), dtype=np.float32)
    return torch.cat(outputs).numpy().astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis (float64)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, Any]:
    """Equal-width bins of top-1 confidence: edges, mean confidence, accuracy, count per bin.

    A prediction with confidence c falls in bin ``ceil(c * n_bins) - 1`` (bins are (lo, hi]).
    Empty bins report confidence 0, accuracy 0, count 0. ``ece`` is the count-weighted mean
    of |accuracy - confidence| (Guo et al., 2017).
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    bin_index = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(bin_index, minlength=n_bins)
    conf_sum = np.bincount(bin_index, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(bin_index, weights=correct, minlength=n_bins)
    nonempty = count > 0
    mean_conf = np.where(nonempty, conf_sum / np.maximum(count, 1), 0.0)
    mean_acc = np.where(nonempty, correct_sum / np.maximum(count, 1), 0.0)
    total = max(int(count.sum()), 1)
    ece = float(np.sum(count / total * np.abs(mean_acc - mean_conf)))
    return {
        "bin_edges": [float(e) for e in np.linspace(0.0, 1.0, n_bins + 1)],
        "confidence": [float(v) for v in mean_conf],
        "accuracy": [float(v) for v in mean_acc],
        "count": [int(v) for v in count],
        "ece": ece,
    }


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE of top-1 softmax confidence over ``n_bins`` equal-width bins."""
    return reliability_bins(probs, labels, n_bins)["ece"]


def compute_metrics(labels: np.ndarray, logits: np.ndarray, classes: Sequence[str] = CLASSES) -> dict[str, Any]:
    """Classification and calibration metrics as a JSON-serialisable dict.

    Keys: n, accuracy, balanced_accuracy, macro_f1, weighted_f1, top2_accuracy, nll, ece,
    per_class (list of {class, precision, recall, f1, support}), confusion (K x K counts,
    rows = true class), confusion_normalized (rows divided by support; zero-support rows are
    zeros), reliability (see ``reliability_bins``), classes.

    Classes absent from ``labels``: balanced accuracy averages recall over classes that occur
    in ``labels``; macro F1 averages over classes that occur in labels or predictions (an
    absent, never-predicted class has no defined F1 and is left out rather than counted as 0);
    per_class still lists all K classes (support 0, zeros where undefined).
    """
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
        top_k_accuracy_score,
    )

    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    logits = np.asarray(logits, dtype=np.float64)
    classes = [str(c) for c in classes]
    num_classes = len(classes)
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(f"logits must be (N, {num_classes}), got {logits.shape}")
    if logits.shape[0] != labels.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels but {logits.shape[0]} logits")
    if labels.size == 0:
        raise ValueError("cannot compute metrics on zero samples")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes})")

    probs = softmax(logits)
    preds = probs.argmax(axis=1)
    all_labels = list(range(num_classes))
    present_in_labels = np.unique(labels)
    present_anywhere = np.union1d(present_in_labels, np.unique(preds))

    confusion = confusion_matrix(labels, preds, labels=all_labels)
    support = confusion.sum(axis=1)
    confusion_normalized = np.divide(
        confusion, support[:, None], out=np.zeros(confusion.shape, dtype=np.float64), where=support[:, None] > 0
    )
    recall_per_class = np.diag(confusion_normalized)
    balanced_accuracy = float(recall_per_class[present_in_labels].mean())

    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, preds, labels=all_labels, average=None, zero_division=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # top-k warns when k >= K (trivially 1.0)
        macro_f1 = f1_score(labels, preds, labels=present_anywhere, average="macro", zero_division=0)
        weighted_f1 = f1_score(labels, preds, labels=all_labels, average="weighted", zero_division=0)
        top2 = top_k_accuracy_score(labels, probs, k=min(2, num_classes), labels=all_labels) if num_classes > 2 else 1.0

    log_probs = logits - logits.max(axis=1, keepdims=True)
    log_probs = log_probs - np.log(np.exp(log_probs).sum(axis=1, keepdims=True))
    nll = float(-log_probs[np.arange(labels.size), labels].mean())

    reliability = reliability_bins(probs, labels, ECE_BINS)
    per_class = [
        {
            "class": classes[k],
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
        }
        for k in range(num_classes)
    ]
    return {
        "n": int(labels.size),
        "accuracy": float(accuracy_score(labels, preds)),
        "balanced_accuracy": balanced_accuracy,
        "macro_f1": float(macro_f1),
        "weighted_f1": float(weighted_f1),
        "top2_accuracy": float(top2),
        "nll": nll,
        "ece": reliability["ece"],
        "per_class": per_class,
        "confusion": confusion.astype(int).tolist(),
        "confusion_normalized": confusion_normalized.tolist(),
        "reliability": reliability,
        "classes": classes,
    }


def without_leaked(
    labels: np.ndarray,
    logits: np.ndarray,
    leaked: np.ndarray,
    classes: Sequence[str] = CLASSES,
    metrics_fn: Callable[..., dict[str, Any]] = compute_metrics,
) -> dict[str, Any] | None:
    """Headline metrics on the items that are not ``leaked`` (``core.ingestion.leaked_mask``): the
    same model and logits, scored as if the split had been de-duplicated against train. None when
    nothing is leaked (the split is already clean) or everything is."""
    leaked = np.asarray(leaked, bool)
    if not leaked.any() or leaked.all():
        return None
    keep = ~leaked
    report = metrics_fn(np.asarray(labels)[keep], np.asarray(logits)[keep], classes)
    return {
        "n": int(keep.sum()), "excluded": int(leaked.sum()),
        **{key: float(report[key]) for key in ("accuracy", "balanced_accuracy", "macro_f1")},
        "recall": {row["class"]: float(row["recall"]) for row in report["per_class"]},
    }


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar entries of ``compute_metrics`` output (what MLflow logs as metrics)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


# --------------------------------------------------------------------------------------------
# Plots (matplotlib imported lazily; figures are built without pyplot, so no GUI backend is
# needed and nothing accumulates in pyplot's figure registry; Figure.savefig works directly)
# --------------------------------------------------------------------------------------------


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def plot_confusion_matrix(
    confusion: Sequence[Sequence[float]] | np.ndarray, classes: Sequence[str] = CLASSES, normalized: bool = False
) -> Figure:
    """Heat map of a K x K confusion matrix (rows = true class), values written in each cell."""
    matrix = np.asarray(confusion, dtype=np.float64)
    num_classes = len(classes)
    fig = _new_figure(1.0 + 0.85 * num_classes, 0.6 + 0.8 * num_classes)
    ax = fig.add_subplot()
    vmax = 1.0 if normalized else max(float(matrix.max()), 1.0)
    image = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=vmax)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(num_classes), labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(range(num_classes), labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (row-normalised)" if normalized else "Confusion matrix (counts)")
    for i in range(num_classes):
        for j in range(num_classes):
            value = matrix[i, j]
            text = f"{value:.2f}" if normalized else f"{int(round(value))}"
            color = "white" if value > 0.6 * vmax else "black"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=8)
    return fig


def plot_reliability(metrics: dict[str, Any]) -> Figure:
    """Reliability diagram: accuracy per confidence bin, gap to the diagonal, ECE in the title.

    Accepts ``compute_metrics`` output (uses its ``reliability``) or ``reliability_bins`` output.
    """
    reliability = metrics.get("reliability", metrics)
    edges = np.asarray(reliability["bin_edges"], dtype=np.float64)
    accuracy = np.asarray(reliability["accuracy"], dtype=np.float64)
    confidence = np.asarray(reliability["confidence"], dtype=np.float64)
    count = np.asarray(reliability["count"], dtype=np.int64)
    centers = (edges[:-1] + edges[1:]) / 2
    width = np.diff(edges)
    nonempty = count > 0

    fig = _new_figure(6.0, 6.5)
    ax, ax_count = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    ax.bar(centers[nonempty], accuracy[nonempty], width=width[nonempty], edgecolor="black",
           color="tab:blue", label="accuracy")
    gap_bottom = np.minimum(accuracy, confidence)[nonempty]
    gap_height = np.abs(confidence - accuracy)[nonempty]
    ax.bar(centers[nonempty], gap_height, bottom=gap_bottom, width=width[nonempty], color="tab:red",
           alpha=0.35, edgecolor="tab:red", hatch="//", label="gap to confidence")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability diagram  (ECE = {float(reliability['ece']):.3f})")
    ax.legend(loc="upper left")
    ax_count.bar(centers, count, width=width, color="tab:gray", edgecolor="black")
    ax_count.set_xlabel("confidence (max softmax probability)")
    ax_count.set_ylabel("samples")
    return fig


def plot_confident_mistakes(
    images: np.ndarray,
    labels: np.ndarray,
    logits: np.ndarray,
    classes: Sequence[str] = CLASSES,
    n: int = 24,
) -> Figure:
    """Grid of the ``n`` most confident wrong predictions, each titled ``true->pred p=..``."""
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[:, 0]
    labels = np.asarray(labels).astype(np.int64)
    probs = softmax(logits)
    preds = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    wrong = np.flatnonzero(preds != labels)
    chosen = wrong[np.argsort(-confidence[wrong], kind="stable")][:n]

    columns = 6
    rows = max(1, math.ceil(len(chosen) / columns))
    fig = _new_figure(columns * 1.6, rows * 1.85 + 0.4)
    fig.suptitle(f"Most confident mistakes ({len(chosen)} of {len(wrong)} wrong)")
    if len(chosen) == 0:
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.5, 0.5, "no mistakes", ha="center", va="center")
        return fig
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, index in zip(axes.ravel(), chosen):
        ax.imshow(images[index], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{classes[labels[index]]}->{classes[preds[index]]}\np={confidence[index]:.2f}", fontsize=8)
    return fig


def plot_per_class(per_class: Sequence[dict[str, Any]]) -> Figure:
    """Grouped bars of recall and F1 per class (support in the tick labels)."""
    names = [f"{row['class']}\n(n={row['support']})" for row in per_class]
    recall = [row["recall"] for row in per_class]
    f1 = [row["f1"] for row in per_class]
    positions = np.arange(len(per_class))
    fig = _new_figure(1.2 + 1.1 * len(per_class), 4.0)
    ax = fig.add_subplot()
    ax.bar(positions - 0.2, recall, width=0.4, label="recall", color="tab:blue")
    ax.bar(positions + 0.2, f1, width=0.4, label="F1", color="tab:orange")
    ax.set_xticks(positions, labels=names)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    ax.set_title("Per-class recall and F1")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return fig
