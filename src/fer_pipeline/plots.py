"""Every figure the project draws, from plain arrays and reports (matplotlib, imported lazily).

Figures are built with ``matplotlib.figure.Figure``, never pyplot: no GUI backend is needed,
nothing accumulates in pyplot's figure registry, and ``Figure.savefig`` works directly (Kedro's
``MatplotlibDataset`` saves them as they are). Used by the Kedro nodes and by the runner's
``--figures`` on returned results; ``core`` draws nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from fer_pipeline.core.augmentation import transforms as augment_module
from fer_pipeline.core.autoencoder.training import reconstruct
from fer_pipeline.core.classes import CLASSES, SPLITS
from fer_pipeline.core.evaluation.metrics import softmax

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure


# ---- evaluation ------------------------------------------------------------------------------


def _new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout=layout)


def plot_confusion_matrix(
    confusion: Sequence[Sequence[float]] | np.ndarray,
    classes: Sequence[str] = CLASSES,
    normalized: bool = False,
    columns: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Heat map of a confusion matrix (rows = true class, one per ``classes``), values written
    in each cell. Square (K x K) by default; a K x (K+1) matrix has one more predicted column,
    labelled ``no_face`` (rows without a prediction, ``core.evaluation.metrics.prediction_metrics``) unless
    ``columns`` names them all."""
    matrix = np.asarray(confusion, dtype=np.float64)
    num_classes = len(classes)
    if columns is None:
        columns = list(classes) + (["no_face"] if matrix.ndim == 2 and matrix.shape[1] == num_classes + 1 else [])
    if matrix.shape != (num_classes, len(columns)):
        raise ValueError(f"a {num_classes} x {len(columns)} confusion matrix expected, got {matrix.shape}")
    num_columns = len(columns)
    fig = _new_figure(1.0 + 0.85 * num_columns, 0.6 + 0.8 * num_classes)
    ax = fig.add_subplot()
    vmax = 1.0 if normalized else max(float(matrix.max()), 1.0)
    image = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=vmax)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(num_columns), labels=list(columns), rotation=45, ha="right")
    ax.set_yticks(range(num_classes), labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if num_columns > num_classes:  # set the extra columns (no_face) apart from the classes
        ax.axvline(num_classes - 0.5, color="black", linewidth=1.0)
    if title is None:
        title = "Confusion matrix (row-normalised)" if normalized else "Confusion matrix (counts)"
    ax.set_title(title)
    for i in range(num_classes):
        for j in range(num_columns):
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


# ---- training --------------------------------------------------------------------------------


def plot_training_curves(history: list[Mapping[str, float]]) -> Figure:
    """Two panels: train / val loss, and the validation metrics, per epoch."""
    figure = _new_figure(10, 4)
    loss_ax, metric_ax = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    loss_ax.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train")
    loss_ax.plot(epochs, [row["val_loss"] for row in history], marker="o", label="val (CE)")
    loss_ax.set(title="Loss", xlabel="epoch", ylabel="loss")
    loss_ax.legend()
    for key, label in (("val_accuracy", "accuracy"), ("val_macro_f1", "macro-F1"),
                       ("val_balanced_accuracy", "balanced accuracy")):
        metric_ax.plot(epochs, [row[key] for row in history], marker="o", label=label)
    if history:
        best = max(range(len(history)), key=lambda i: history[i]["val_macro_f1"])
        metric_ax.axvline(epochs[best], color="grey", linestyle=":", label="best macro-F1")
    metric_ax.set(title="Validation", xlabel="epoch", ylim=(0, 1))
    metric_ax.legend()
    return figure


def plot_class_counts(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Grouped bars of ``core.class_balance.split_class_table`` rows: one group per class, one
    bar per split, counts written on the bars, the train imbalance ratio in the title."""
    classes = list(dict.fromkeys(row["class"] for row in rows))
    splits = [s for s in SPLITS if any(row["split"] == s for row in rows)]
    counts = {(row["split"], row["class"]): int(row["count"]) for row in rows}
    fig = _new_figure(9, 4.5)
    ax = fig.add_subplot()
    width = 0.8 / max(len(splits), 1)
    x = np.arange(len(classes))
    for i, split in enumerate(splits):
        bars = ax.bar(x + i * width, [counts.get((split, c), 0) for c in classes], width, label=split)
        ax.bar_label(bars, fontsize=7, padding=1)
    ax.set_xticks(x + width * (len(splits) - 1) / 2, classes)
    ax.set_ylabel("images")
    train = [counts.get(("train", c), 0) for c in classes]
    ratio = max(train) / max(min(train), 1) if "train" in splits else float("nan")
    ax.set_title(f"Class counts per split (train imbalance ratio {ratio:.1f})")
    ax.legend()
    return fig


def plot_ablation(rows: Sequence[Mapping[str, Any]], best: str | None) -> Figure:
    """Two panels per strategy (the ablation's ``summarize`` rows: (mean, std) per column), std as
    error bars, the best strategy marked: val (PublicTest) and test (PrivateTest) macro-F1, and
    the test recall of the minority classes the question is about (disgust, fear)."""
    names = [f"{r['strategy']} (best)" if r["strategy"] == best else r["strategy"] for r in rows]
    x = np.arange(len(rows))
    figure = _new_figure(max(8.0, 1.5 * len(rows) + 2), 4.2)
    overall, minority = figure.subplots(1, 2)
    panels = ((overall, (("val_macro_f1", "val (PublicTest)"), ("test_macro_f1", "test (PrivateTest)")),
               "macro-F1 (%)", "Macro-F1"),
              (minority, (("test_recall_disgust", "disgust"), ("test_recall_fear", "fear")),
               "test recall (%)", "Recall of the minority classes"))
    for ax, series, ylabel, title in panels:
        for offset, (key, label) in zip((-0.2, 0.2), series):
            means = np.array([r.get(key, (math.nan, math.nan))[0] for r in rows]) * 100
            stds = np.nan_to_num(np.array([r.get(key, (math.nan, math.nan))[1] for r in rows]) * 100)
            ax.bar(x + offset, np.nan_to_num(means), 0.4, yerr=stds, capsize=3, label=label)
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, loc="upper left")
    finite = [r[k][0] * 100 for r in rows for k in ("val_macro_f1", "test_macro_f1") if not math.isnan(r[k][0])]
    if finite:
        overall.set_ylim(max(0.0, min(finite) - 10), min(100.0, max(finite) + 5))
    figure.suptitle("Class-imbalance ablation (mean ± std over seeds)")
    return figure


# ---- face grids ------------------------------------------------------------------------------


def pick_per_class(labels: np.ndarray, num_classes: int, per_class: int, seed: int) -> list[np.ndarray]:
    """Up to ``per_class`` random indices of each class (sorted), the same for the same seed."""
    rng = np.random.default_rng(seed)
    picks = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        picks.append(np.sort(rng.choice(idx, size=min(per_class, len(idx)), replace=False)) if len(idx) else idx)
    return picks


def image_grid(rows: Sequence[np.ndarray], row_labels: Sequence[str], title: str | None = None, cell: float = 0.9):
    """Matplotlib Figure with one row per uint8 array (n,H,W); rows may differ in length."""
    n_cols = max([len(r) for r in rows] + [1])
    fig = _new_figure(cell * n_cols + 1.6, cell * max(len(rows), 1) + (0.5 if title else 0.1), layout=None)
    axes = fig.subplots(max(len(rows), 1), n_cols, squeeze=False)
    for r, (row, label) in enumerate(zip(rows, row_labels)):
        for col in range(n_cols):
            ax = axes[r][col]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(row):
                ax.imshow(row[col], cmap="gray", vmin=0, vmax=255)
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title)
    top = 1.0 - (0.45 if title else 0.05) / fig.get_figheight()
    fig.subplots_adjust(left=1.4 / fig.get_figwidth(), right=0.99, bottom=0.02, top=top, wspace=0.05, hspace=0.05)
    return fig


def reconstruction_grid(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str] = CLASSES,
    per_class: int = 8,
    seed: int = 0,
):
    """Per class: a row of real faces and a row of their reconstructions."""
    labels = np.asarray(labels, dtype=np.int64)
    rows, names = [], []
    for c, idx in enumerate(pick_per_class(labels, len(classes), per_class, seed)):
        real = np.asarray(images[idx], dtype=np.uint8)
        rows += [real, reconstruct(model, real)]
        names += [f"{classes[c]}\nreal", f"{classes[c]}\nrecon"]
    return image_grid(rows, names, title="Autoencoder reconstructions")


def samples_grid(
    images: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str] = CLASSES,
    per_class: int = 8,
    seed: int = 0,
    title: str = "Samples",
):
    """Per class: a row of up to ``per_class`` random faces (e.g. synthetic ones)."""
    labels = np.asarray(labels, dtype=np.int64)
    picks = pick_per_class(labels, len(classes), per_class, seed)
    return image_grid([np.asarray(images[idx], dtype=np.uint8) for idx in picks], list(classes), title=title)


def preview_grid(
    images: np.ndarray,
    labels: np.ndarray,
    policy: Mapping[str, Any] | None,
    classes: Sequence[str] = CLASSES,
    per_class: int = 6,
    seed: int = 0,
):
    """Per class: a row of original faces and a row of the same faces augmented by ``policy``."""
    labels = np.asarray(labels, dtype=np.int64)
    augment = augment_module.BatchAugment(policy).train()
    generator = torch.Generator().manual_seed(seed)
    rows, names = [], []
    for c, idx in enumerate(pick_per_class(labels, len(classes), per_class, seed)):
        originals = np.asarray(images[idx], dtype=np.uint8)
        x = torch.from_numpy(originals).float().div(255.0).unsqueeze(1)
        augmented = augment(x, generator=generator) if len(idx) else x
        rows += [originals, augmented.mul(255).round().clamp(0, 255).to(torch.uint8).squeeze(1).numpy()]
        names += [f"{classes[c]}\noriginal", f"{classes[c]}\naugmented"]
    return image_grid(rows, names, title="Augmentation preview")
