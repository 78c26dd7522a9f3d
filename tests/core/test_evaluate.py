"""Tests for core.evaluate: TTA inference, metrics against sklearn / hand values, plots."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score
from torch import nn

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.evaluate import (
    compute_metrics,
    expected_calibration_error,
    plot_confident_mistakes,
    plot_confusion_matrix,
    plot_per_class,
    plot_reliability,
    predict_logits,
    reliability_bins,
    scalar_metrics,
    without_leaked,
)
from fer_pipeline.core.models import build_resnet34, model_config


class Probe(nn.Module):
    """Records every input it sees; logit k = (k + 1) * mean of the input (per sample)."""

    def __init__(self, num_classes: int = 7) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.seen: list[torch.Tensor] = []
        self.scale = nn.Parameter(torch.arange(1, num_classes + 1, dtype=torch.float32), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return x.mean(dim=(1, 2, 3))[:, None] * self.scale


@pytest.fixture(scope="module")
def small_resnet() -> nn.Module:
    torch.manual_seed(0)
    return build_resnet34(arch="resnet18").eval()


def symmetric_faces(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    left = rng.integers(0, 256, size=(n, 48, 24), dtype=np.uint8)
    return np.concatenate([left, left[:, :, ::-1]], axis=2)


# ---------------------------------------------------------------------------- inference / TTA


@pytest.mark.parametrize("tta", ["none", "flip", "ten_crop"])
@pytest.mark.parametrize("input_size", [44, 48])
def test_tta_output_shape_and_views(tta: str, input_size: int) -> None:
    probe = Probe()
    config = model_config(input_size=input_size)
    images = np.random.default_rng(1).integers(0, 256, size=(5, 48, 48), dtype=np.uint8)
    logits = predict_logits(probe, images, config, tta=tta, batch_size=256, device="cpu")
    assert logits.shape == (5, 7) and logits.dtype == np.float32
    expected_views = {"none": 1, "flip": 2, "ten_crop": 10}[tta]
    assert len(probe.seen) == expected_views
    assert all(view.shape == (5, 1, input_size, input_size) for view in probe.seen)


def test_preprocessing_normalises_and_repeats_channels() -> None:
    probe = Probe()
    config = model_config(in_channels=3, input_size=44)
    images = np.full((2, 48, 48), 255, dtype=np.uint8)
    images[1] = 0
    logits = predict_logits(probe, images, config, device="cpu")
    (view,) = probe.seen
    assert view.shape == (2, 3, 44, 44)
    # (1 - 0.5) / 0.25 = 2 and (0 - 0.5) / 0.25 = -2
    np.testing.assert_allclose(logits[:, 0], [2.0, -2.0], atol=1e-6)
    np.testing.assert_allclose(logits[:, 6], [14.0, -14.0], atol=1e-5)


def test_centre_crop_takes_the_middle() -> None:
    probe = Probe()
    images = np.zeros((1, 48, 48), dtype=np.uint8)
    images[0, 2:46, 2:46] = 255  # exactly the 44 px centre crop is white
    predict_logits(probe, images, model_config(input_size=44), device="cpu")
    assert torch.all(probe.seen[0] == 2.0)


def test_flip_tta_of_symmetric_faces_equals_no_tta(small_resnet: nn.Module) -> None:
    images = symmetric_faces(6)
    np.testing.assert_array_equal(images, images[:, :, ::-1])
    config = model_config(arch="resnet18")
    plain = predict_logits(small_resnet, images, config, tta="none", device="cpu")
    flipped = predict_logits(small_resnet, images, config, tta="flip", device="cpu")
    np.testing.assert_allclose(flipped, plain, rtol=0, atol=1e-6)


def test_flip_tta_differs_on_asymmetric_faces(small_resnet: nn.Module) -> None:
    images = np.random.default_rng(3).integers(0, 256, size=(4, 48, 48), dtype=np.uint8)
    config = model_config(arch="resnet18")
    plain = predict_logits(small_resnet, images, config, tta="none", device="cpu")
    flipped = predict_logits(small_resnet, images, config, tta="flip", device="cpu")
    assert not np.allclose(plain, flipped, atol=1e-6)


def test_batching_and_memory_format_do_not_change_logits(small_resnet: nn.Module) -> None:
    images = torch.from_numpy(np.random.default_rng(4).integers(0, 256, size=(7, 1, 48, 48), dtype=np.uint8))
    config = model_config(arch="resnet18", input_size=44)
    one_batch = predict_logits(small_resnet, images, config, batch_size=256, device="cpu")
    small_batches = predict_logits(small_resnet, images, config, batch_size=3, device="cpu", channels_last=False)
    np.testing.assert_allclose(small_batches, one_batch, atol=1e-4)


def test_predict_logits_rejects_bad_input() -> None:
    config = model_config()
    with pytest.raises(ValueError, match="tta"):
        predict_logits(Probe(), np.zeros((1, 48, 48), np.uint8), config, tta="five_crop")
    with pytest.raises(TypeError, match="uint8"):
        predict_logits(Probe(), np.zeros((1, 48, 48), np.float32), config)
    assert predict_logits(Probe(), np.zeros((0, 48, 48), np.uint8), config).shape == (0, 7)


# ---------------------------------------------------------------------------- metrics

CLASSES5 = ("a", "b", "c", "d", "e")
# Class "d" never occurs in the labels but is predicted once; class "e" occurs nowhere.
LABELS = np.array([0, 0, 0, 1, 1, 2, 2])
PREDS = np.array([0, 0, 1, 1, 1, 3, 0])
SECOND = np.array([1, 2, 0, 0, 0, 2, 1])  # top-2 misses only sample 6


def example_logits() -> np.ndarray:
    logits = np.zeros((len(LABELS), len(CLASSES5)))
    logits[np.arange(len(LABELS)), PREDS] = 2.0
    logits[np.arange(len(LABELS)), SECOND] = 1.0
    return logits


def test_compute_metrics_hand_values() -> None:
    metrics = compute_metrics(LABELS, example_logits(), CLASSES5)
    assert metrics["n"] == 7
    assert metrics["accuracy"] == pytest.approx(4 / 7)
    # recall a=2/3, b=1, c=0 (d, e have no support and are left out)
    assert metrics["balanced_accuracy"] == pytest.approx(5 / 9)
    # F1: a=2/3, b=0.8, c=0, d=0 (predicted, never right); e undefined -> left out
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 4)
    assert metrics["weighted_f1"] == pytest.approx((3 * 2 / 3 + 2 * 0.8) / 7)
    assert metrics["top2_accuracy"] == pytest.approx(6 / 7)
    assert metrics["confusion"] == [
        [2, 1, 0, 0, 0],
        [0, 2, 0, 0, 0],
        [1, 0, 0, 1, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ]
    np.testing.assert_allclose(metrics["confusion_normalized"][0], [2 / 3, 1 / 3, 0, 0, 0])
    assert metrics["confusion_normalized"][3] == [0.0] * 5
    by_class = {row["class"]: row for row in metrics["per_class"]}
    assert by_class["a"]["support"] == 3
    assert [by_class["a"][k] for k in ("precision", "recall", "f1")] == pytest.approx([2 / 3, 2 / 3, 2 / 3])
    assert by_class["b"]["precision"] == pytest.approx(2 / 3) and by_class["b"]["f1"] == pytest.approx(0.8)
    assert by_class["d"] == {"class": "d", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    expected_nll = torch.nn.functional.cross_entropy(torch.tensor(example_logits()), torch.tensor(LABELS)).item()
    assert metrics["nll"] == pytest.approx(expected_nll)


def test_compute_metrics_agrees_with_sklearn() -> None:
    metrics = compute_metrics(LABELS, example_logits(), CLASSES5)
    with pytest.warns(UserWarning):  # sklearn warns about the predicted-but-absent class
        assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(LABELS, PREDS))
    assert metrics["macro_f1"] == pytest.approx(f1_score(LABELS, PREDS, average="macro"))
    assert metrics["weighted_f1"] == pytest.approx(f1_score(LABELS, PREDS, average="weighted"))


def test_without_leaked_scores_the_clean_items_only() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 7, 200)
    logits = rng.normal(size=(200, 7)) + 3.0 * np.eye(7)[labels]
    leaked = np.zeros(200, bool)
    assert without_leaked(labels, logits, leaked) is None  # nothing to exclude
    assert without_leaked(labels, logits, ~leaked) is None  # nothing left
    leaked[:30] = True
    logits[:30] = -np.eye(7)[labels[:30]]  # the leaked items are all wrong: excluding them raises accuracy
    clean = without_leaked(labels, logits, leaked)
    reference = compute_metrics(labels[30:], logits[30:])
    assert (clean["n"], clean["excluded"]) == (170, 30)
    for key in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert clean[key] == pytest.approx(reference[key])
    assert clean["accuracy"] > compute_metrics(labels, logits)["accuracy"]
    assert list(clean["recall"]) == list(CLASSES)
    json.dumps(clean)


def test_compute_metrics_is_json_serialisable_and_has_scalars() -> None:
    metrics = compute_metrics(LABELS, example_logits(), CLASSES5)
    round_trip = json.loads(json.dumps(metrics))
    assert round_trip["classes"] == list(CLASSES5)
    assert len(round_trip["reliability"]["count"]) == 15 and sum(round_trip["reliability"]["count"]) == 7
    scalars = scalar_metrics(metrics)
    assert {"accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "top2_accuracy", "ece", "nll"} <= set(scalars)
    assert "per_class" not in scalars


def test_compute_metrics_validates_shapes() -> None:
    with pytest.raises(ValueError):
        compute_metrics(LABELS, example_logits()[:, :4], CLASSES5)
    with pytest.raises(ValueError):
        compute_metrics(LABELS[:3], example_logits(), CLASSES5)


# ---------------------------------------------------------------------------- calibration

PROBS4 = np.array([[0.9, 0.1], [0.85, 0.15], [0.3, 0.7], [0.35, 0.65]])
LABELS4 = np.array([0, 1, 1, 0])  # right, wrong, right, wrong


def test_ece_hand_computed() -> None:
    # 15 bins: each sample alone in its bin -> mean |correct - confidence|
    assert expected_calibration_error(PROBS4, LABELS4) == pytest.approx((0.1 + 0.85 + 0.3 + 0.65) / 4)
    # 5 bins: (0.8, 1] holds 0.9 & 0.85 (acc 0.5), (0.6, 0.8] holds 0.7 & 0.65 (acc 0.5)
    assert expected_calibration_error(PROBS4, LABELS4, n_bins=5) == pytest.approx(
        0.5 * abs(0.5 - 0.875) + 0.5 * abs(0.5 - 0.675)
    )
    # 2 bins: one bin, accuracy 0.5 vs mean confidence 0.775
    assert expected_calibration_error(PROBS4, LABELS4, n_bins=2) == pytest.approx(0.275)


def test_ece_is_zero_when_calibrated() -> None:
    probs = np.array([[0.75, 0.25]] * 4)
    labels = np.array([0, 0, 0, 1])  # 75% right at 75% confidence
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0)


def test_reliability_bins_contents() -> None:
    bins = reliability_bins(PROBS4, LABELS4, n_bins=5)
    assert bins["count"] == [0, 0, 0, 2, 2]
    np.testing.assert_allclose(bins["confidence"], [0, 0, 0, 0.675, 0.875])
    np.testing.assert_allclose(bins["accuracy"], [0, 0, 0, 0.5, 0.5])
    np.testing.assert_allclose(bins["bin_edges"], np.linspace(0, 1, 6))


# ---------------------------------------------------------------------------- plots


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


def test_cpu_bf16_autocast_is_close_to_fp32(small_resnet: nn.Module) -> None:
    images = np.random.default_rng(5).integers(0, 256, size=(4, 48, 48), dtype=np.uint8)
    config = model_config(arch="resnet18")
    fp32 = predict_logits(small_resnet, images, config, device="cpu")
    bf16 = predict_logits(small_resnet, images, config, device="cpu", bf16=True)
    assert bf16.dtype == np.float32
    assert not np.array_equal(bf16, fp32)  # autocast really ran in bf16
    np.testing.assert_allclose(bf16, fp32, atol=0.05 * np.abs(fp32).max() + 1e-3)
