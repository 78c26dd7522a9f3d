"""core.evaluation.metrics: hand-computed values, agreement with scikit-learn, leak-free scores, calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.evaluation.metrics import (
    NO_PREDICTION,
    classification_metrics,
    compute_metrics,
    prediction_metrics,
    reliability_bins,
    without_leaked,
)
from tests.core.metrics_examples import CLASSES5, LABELS, PREDS, example_logits


def expected_calibration_error(probs, labels, n_bins=15):
    return reliability_bins(probs, labels, n_bins)["ece"]

# ---------------------------------------------------------------------------- predicted classes


def test_classification_metrics_by_hand():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 0, 2])
    metrics = classification_metrics(y_true, y_pred, num_classes=4)  # class 3 absent: ignored
    f1 = [2 * 1 / (2 + 2), 2 * 2 / (2 + 3), 2 * 1 / (2 + 1)]  # 2TP / (support + predicted)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["macro_f1"] == pytest.approx(np.mean(f1))
    assert metrics["balanced_accuracy"] == pytest.approx(np.mean([0.5, 1.0, 0.5]))


def _counted_by_hand(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> dict[str, float]:
    """The three metrics counted out with NumPy from the confusion matrix: an independent reference."""
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    true_pos, support, predicted = np.diag(confusion), confusion.sum(1), confusion.sum(0)
    present = (support + predicted) > 0
    f1 = 2 * true_pos[present] / (support + predicted)[present]
    return {"accuracy": true_pos.sum() / confusion.sum(), "macro_f1": f1.mean(),
            "balanced_accuracy": (true_pos[support > 0] / support[support > 0]).mean()}


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_match_the_counting(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 6, 300)
    y_pred = np.where(rng.random(300) < 0.4, y_true, rng.integers(0, 7, 300))  # class 6 only predicted
    assert classification_metrics(y_true, y_pred, 7) == pytest.approx(_counted_by_hand(y_true, y_pred, 7))


def test_classification_metrics_match_sklearn():
    import sklearn.metrics as sklearn_metrics

    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 6, 200)  # class 6 never true ...
    y_pred = rng.integers(0, 7, 200)  # ... but predicted
    ours = classification_metrics(y_true, y_pred, 7)
    assert ours["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(y_true, y_pred))
    assert ours["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(y_true, y_pred, average="macro"))
    with pytest.warns(UserWarning):  # sklearn warns about the predicted-only class; same value
        expected = sklearn_metrics.balanced_accuracy_score(y_true, y_pred)
    assert ours["balanced_accuracy"] == pytest.approx(expected)


# ---------------------------------------------------------------------------- rows without a prediction

# Two rows got no prediction (a photo without a face): one of class a, one of class b.
NP_TRUE = np.array([0, 0, 0, 1, 1, 2])
NP_PRED = np.array([0, 1, NO_PREDICTION, 1, NO_PREDICTION, 2])


def test_rows_without_a_prediction_are_wrong_and_lower_their_class_recall():
    report = prediction_metrics(NP_TRUE, NP_PRED, ("a", "b", "c", "d"), no_prediction="no_face")
    assert (report["n"], report["predicted"], report["no_prediction"]) == (6, 4, 2)
    assert report["confusion"] == [[1, 1, 0, 0, 1], [0, 1, 0, 0, 1], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]]
    assert report["confusion_columns"] == ["a", "b", "c", "d", "no_face"]
    assert report["accuracy"] == pytest.approx(3 / 6)
    assert report["accuracy_predicted"] == pytest.approx(3 / 4)
    assert report["balanced_accuracy"] == pytest.approx(np.mean([1 / 3, 1 / 2, 1]))  # d: no label, left out
    # F1 over the labels' classes a, b, c: a P=1 R=1/3, b P=1/2 R=1/2, c P=R=1
    assert report["macro_f1"] == pytest.approx(np.mean([0.5, 0.5, 1.0]))
    assert report["classes_present"] == ["a", "b", "c"]
    by_class = {row["class"]: row for row in report["per_class"]}
    assert by_class["a"]["support"] == 3 and by_class["a"]["recall"] == pytest.approx(1 / 3)
    assert by_class["b"]["precision"] == pytest.approx(1 / 2)
    np.testing.assert_allclose(report["confusion_normalized"][1], [0, 0.5, 0, 0, 0.5])
    json.dumps(report)
    # the same counting as classification_metrics, with its f1 convention for the labels only
    assert classification_metrics(NP_TRUE, NP_PRED, 4, f1_average="labels") == pytest.approx(
        {key: report[key] for key in ("accuracy", "macro_f1", "balanced_accuracy")})


def test_macro_f1_over_the_labels_or_also_the_predictions():
    y_true, y_pred = np.array([0, 0, 1, 1]), np.array([0, 3, 1, 1])  # class 3 predicted, never true
    assert classification_metrics(y_true, y_pred, 4)["macro_f1"] == pytest.approx(np.mean([2 / 3, 1, 0]))
    assert classification_metrics(y_true, y_pred, 4, f1_average="labels")["macro_f1"] == pytest.approx(
        np.mean([2 / 3, 1]))
    with pytest.raises(ValueError, match="f1_average"):
        classification_metrics(y_true, y_pred, 4, f1_average="micro")


def test_with_every_row_predicted_the_extra_column_is_empty_and_the_counts_are_compute_metrics():
    report = prediction_metrics(LABELS, PREDS, CLASSES5, f1_average="labels_or_predictions")
    reference = compute_metrics(LABELS, example_logits(), CLASSES5)
    assert [row[:-1] for row in report["confusion"]] == reference["confusion"]
    assert all(row[-1] == 0 for row in report["confusion"]) and report["no_prediction"] == 0
    for key in ("accuracy", "macro_f1", "balanced_accuracy"):
        assert report[key] == pytest.approx(reference[key])
    assert report["per_class"] == reference["per_class"]


def test_predictions_out_of_range_are_refused():
    with pytest.raises(ValueError, match="NO_PREDICTION"):
        prediction_metrics(np.array([0, 1]), np.array([0, 7]), ("a", "b"))
    with pytest.raises(ValueError, match="2 labels but 1 predictions"):
        classification_metrics(np.array([0, 1]), np.array([0]), 2)


# ---------------------------------------------------------------------------- logits

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
    scalars = {key for key, value in metrics.items() if isinstance(value, float)}
    assert {"accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "top2_accuracy", "ece", "nll"} <= scalars


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
