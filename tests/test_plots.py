"""fer_pipeline.plots: every figure renders, from the arrays and reports the stages produce."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from fer_pipeline.core.augmentation.transforms import DEFAULT_POLICY
from fer_pipeline.core.autoencoder.network import ConvAutoencoder
from fer_pipeline.core.class_balance.weights import split_class_table
from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.evaluation.metrics import compute_metrics
from fer_pipeline.plots import (
    plot_ablation,
    plot_class_counts,
    plot_confident_mistakes,
    plot_confusion_matrix,
    plot_per_class,
    plot_reliability,
    plot_training_curves,
    preview_grid,
    reconstruction_grid,
    samples_grid,
)
from tests.core.metrics_examples import CLASSES5, LABELS, PREDS, example_logits


def tiny_model(seed: int = 0) -> ConvAutoencoder:
    torch.manual_seed(seed)
    return ConvAutoencoder(latent_dim=16, base_channels=4).eval()


def blob_faces(n: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), np.arange(n, dtype=np.int64) % num_classes


def _png_bytes(fig) -> int:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return len(buffer.getvalue())


def test_plots_render() -> None:
    from matplotlib.figure import Figure

    metrics = compute_metrics(LABELS, example_logits(), CLASSES5)
    figures = [
        plot_confusion_matrix(metrics["confusion"], CLASSES5, normalized=False),
        plot_confusion_matrix(metrics["confusion_normalized"], CLASSES5, normalized=True),
        plot_reliability(metrics),
        plot_per_class(metrics["per_class"]),
    ]
    assert "ECE" in figures[2].axes[0].get_title()
    assert len(figures[3].axes[0].patches) == 2 * len(CLASSES5)
    for fig in figures:
        assert isinstance(fig, Figure)
        assert _png_bytes(fig) > 1000


def test_confusion_matrix_with_a_no_face_column() -> None:
    from fer_pipeline.core.evaluation.metrics import NO_PREDICTION, prediction_metrics

    report = prediction_metrics(LABELS, np.where(np.arange(len(PREDS)) == 2, NO_PREDICTION, PREDS), CLASSES5)
    fig = plot_confusion_matrix(report["confusion"], CLASSES5, title="set: accuracy")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [*CLASSES5, "no_face"]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CLASSES5)
    assert ax.get_title() == "set: accuracy"
    assert ax.texts[len(CLASSES5)].get_text() == "1"  # row a, column no_face: sample 2 (an a) has no prediction
    assert _png_bytes(fig) > 1000
    with pytest.raises(ValueError, match=r"a 5 x 5 confusion matrix expected, got \(5, 7\)"):
        plot_confusion_matrix(np.zeros((5, 7)), CLASSES5)


def test_confident_mistakes_picks_wrong_predictions_by_confidence() -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(7, 48, 48), dtype=np.uint8)
    logits = example_logits()
    logits[6, 0] = 5.0  # the most confident mistake: c -> a
    fig = plot_confident_mistakes(images, LABELS, logits, CLASSES5, n=2)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 2
    assert titles[0].startswith("c->a")
    assert _png_bytes(fig) > 1000
    no_mistakes = plot_confident_mistakes(images[:2], LABELS[:2], logits[:2], CLASSES5)
    assert _png_bytes(no_mistakes) > 1000


def test_plot_training_curves():
    pytest.importorskip("matplotlib")
    history = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1), "val_accuracy": 0.3 + e / 10,
                "val_macro_f1": 0.2 + e / 10, "val_balanced_accuracy": 0.25 + e / 10} for e in range(3)]
    figure = plot_training_curves(history)
    assert len(figure.axes) == 2 and len(figure.axes[0].lines) == 2


def test_figures_have_one_row_per_class_and_kind():
    pytest.importorskip("matplotlib")
    images, labels = blob_faces(21, num_classes=7)
    fig = reconstruction_grid(tiny_model(), images, labels, CLASSES, per_class=2)
    assert len(fig.axes) == 2 * 7 * 2
    fig = samples_grid(images, labels, CLASSES, per_class=3, title="synthetic")
    assert len(fig.axes) == 7 * 3


def test_preview_grid_rows():
    pytest.importorskip("matplotlib")
    images = np.random.default_rng(0).integers(0, 256, (21, 48, 48), dtype=np.uint8)
    labels = np.arange(21) % 7
    fig = preview_grid(images, labels, DEFAULT_POLICY, CLASSES, per_class=3)
    assert len(fig.axes) == 2 * 7 * 3


def test_class_counts_one_bar_per_split_and_class_with_the_ratio():
    labels = np.array([0] * 6 + [1] * 2 + [0, 1] * 2)
    splits = np.array(["train"] * 8 + ["val"] * 2 + ["test"] * 2)
    fig = plot_class_counts(split_class_table(labels, splits, ("a", "b")))
    ax = fig.axes[0]
    assert len(ax.patches) == 3 * 2  # splits x classes
    assert "imbalance ratio 3.0" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert _png_bytes(fig) > 1000


def test_ablation_chart_marks_the_best_strategy():
    rows = [{"strategy": "ce", "val_macro_f1": (0.5, 0.01), "test_macro_f1": (0.48, float("nan"))},
            {"strategy": "logit_adjusted", "val_macro_f1": (0.55, 0.02), "test_macro_f1": (0.5, 0.02)}]
    fig = plot_ablation(rows, best="logit_adjusted")
    ax = fig.axes[0]
    assert len(ax.patches) == 2 * 2
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ce", "logit_adjusted (best)"]
    assert _png_bytes(fig) > 1000
