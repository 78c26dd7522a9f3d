"""Classification and calibration metrics: the one implementation every caller scores with.

The training loop's validation, the evaluation stage (``core.evaluation.split.evaluate_split``, which the
Kedro node, the runner without Kedro and the ablation call), and the predict stage's
probabilities all come from here. Counting is scikit-learn's; it is imported inside the
functions that use it, so ``core`` still imports where it is missing.

Conventions for classes absent from the labels: balanced accuracy averages recall over the
classes that occur in the labels; macro-F1 averages over the classes that occur in the labels
or the predictions (an absent, never-predicted class has no defined F1 and is left out rather
than counted as 0). That is what ``sklearn.metrics.f1_score(average="macro")`` does without a
``labels`` argument.

Rows without a prediction (``NO_PREDICTION``: an external photo where no face was found) are
scored by the same counting (``classification_metrics``, ``prediction_metrics``): each is
wrong, lies in its own extra confusion column, and counts in its class's support and recall.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from fer_pipeline.core.classes import CLASSES

#: Number of equal-width confidence bins for ECE and the reliability diagram.
ECE_BINS = 15

#: The metrics a model is selected and compared by.
HEADLINE_KEYS: tuple[str, ...] = ("accuracy", "macro_f1", "balanced_accuracy")

#: ``y_pred`` value of a row that got no prediction (a photo where no face was found): it is
#: always wrong and is counted in an extra confusion column (``prediction_metrics``).
NO_PREDICTION = -1

#: Which classes macro-F1 averages over: those in the labels or the predictions (FER2013's
#: convention, ``sklearn.metrics.f1_score(average="macro")``), or those in the labels only (an
#: external set whose label space is a subset of the model's).
F1_AVERAGES: tuple[str, ...] = ("labels_or_predictions", "labels")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis (float64)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """K x K counts (rows = true class); with ``NO_PREDICTION`` rows in ``y_pred``, K x (K+1):
    the last column counts them."""
    from sklearn.metrics import confusion_matrix

    unpredicted = y_pred == NO_PREDICTION
    if not unpredicted.any():
        return confusion_matrix(y_true, y_pred, labels=list(range(num_classes)))
    y_pred = np.where(unpredicted, num_classes, y_pred)
    return confusion_matrix(y_true, y_pred, labels=list(range(num_classes + 1)))[:num_classes]


def _check_predictions(y_pred: np.ndarray, y_true: np.ndarray, num_classes: int) -> np.ndarray:
    y_pred = np.asarray(y_pred).astype(np.int64).reshape(-1)
    if y_pred.shape != y_true.shape:
        raise ValueError(f"{y_true.size} labels but {y_pred.size} predictions")
    valid = ((y_pred >= 0) & (y_pred < num_classes)) | (y_pred == NO_PREDICTION)
    if not valid.all():
        raise ValueError(f"predictions must lie in [0, {num_classes}) or be NO_PREDICTION ({NO_PREDICTION})")
    return y_pred


def _check_labels(y_true: np.ndarray, num_classes: int) -> np.ndarray:
    y_true = np.asarray(y_true).astype(np.int64).reshape(-1)
    if y_true.size == 0:
        raise ValueError("cannot compute metrics on zero samples")
    if y_true.min() < 0 or y_true.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes})")
    return y_true


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, f1_average: str = "labels_or_predictions"
) -> dict[str, float]:
    """accuracy, macro_f1 and balanced_accuracy of predicted class indices.

    ``y_pred`` may hold ``NO_PREDICTION`` for rows that got none: they are wrong, count in
    their class's support (so they lower its recall) and are no class of their own for
    macro-F1. ``f1_average``: the classes macro-F1 averages over (``F1_AVERAGES``)."""
    from sklearn.metrics import accuracy_score, f1_score

    if f1_average not in F1_AVERAGES:
        raise ValueError(f"f1_average must be one of {F1_AVERAGES}, got {f1_average!r}")
    y_true = _check_labels(y_true, num_classes)
    y_pred = _check_predictions(y_pred, y_true, num_classes)
    confusion = _confusion(y_true, y_pred, num_classes)
    support = confusion.sum(axis=1)
    recall = np.diag(confusion)[support > 0] / support[support > 0]
    predicted = y_pred[y_pred != NO_PREDICTION]
    present = np.unique(y_true) if f1_average == "labels" else np.union1d(np.unique(y_true), np.unique(predicted))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "balanced_accuracy": float(recall.mean()),
    }


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


def _per_class(confusion: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> list[dict]:
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(len(classes))), average=None, zero_division=0
    )
    support = confusion.sum(axis=1)
    return [
        {"class": name, "precision": float(precision[k]), "recall": float(recall[k]), "f1": float(f1[k]),
         "support": int(support[k])}
        for k, name in enumerate(classes)
    ]


def compute_metrics(labels: np.ndarray, logits: np.ndarray, classes: Sequence[str] = CLASSES) -> dict[str, Any]:
    """Classification and calibration metrics of logits, as a JSON-serialisable dict.

    Keys: n, accuracy, balanced_accuracy, macro_f1 (``classification_metrics``), weighted_f1,
    top2_accuracy, nll, ece, per_class (list of {class, precision, recall, f1, support} for all
    K classes, zeros where undefined), confusion (K x K counts, rows = true class),
    confusion_normalized (rows divided by support; zero-support rows are zeros), reliability
    (see ``reliability_bins``), classes.
    """
    from sklearn.metrics import f1_score, top_k_accuracy_score

    classes = [str(c) for c in classes]
    num_classes = len(classes)
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(f"logits must be (N, {num_classes}), got {logits.shape}")
    labels = _check_labels(labels, num_classes)
    if logits.shape[0] != labels.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels but {logits.shape[0]} logits")

    probs = softmax(logits)
    preds = probs.argmax(axis=1)
    confusion = _confusion(labels, preds, num_classes)
    support = confusion.sum(axis=1)
    confusion_normalized = np.divide(
        confusion, support[:, None], out=np.zeros(confusion.shape, dtype=np.float64), where=support[:, None] > 0
    )
    all_labels = list(range(num_classes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # top-k warns when k >= K (trivially 1.0)
        weighted_f1 = f1_score(labels, preds, labels=all_labels, average="weighted", zero_division=0)
        top2 = top_k_accuracy_score(labels, probs, k=2, labels=all_labels) if num_classes > 2 else 1.0
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    reliability = reliability_bins(probs, labels, ECE_BINS)
    return {
        "n": int(labels.size),
        **classification_metrics(labels, preds, num_classes),
        "weighted_f1": float(weighted_f1),
        "top2_accuracy": float(top2),
        "nll": float(-log_probs[np.arange(labels.size), labels].mean()),
        "ece": reliability["ece"],
        "per_class": _per_class(confusion, labels, preds, classes),
        "confusion": confusion.astype(int).tolist(),
        "confusion_normalized": confusion_normalized.tolist(),
        "reliability": reliability,
        "classes": classes,
    }


def prediction_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    classes: Sequence[str] = CLASSES,
    f1_average: str = "labels",
    no_prediction: str = "no_face",
) -> dict[str, Any]:
    """Metrics of predicted class indices where some rows may have no prediction
    (``NO_PREDICTION``), as a JSON-serialisable dict: what scores an external labelled set.

    The counting is ``compute_metrics``'s (``classification_metrics``, ``_per_class``): a row
    without a prediction is wrong and counts in its class's support. Keys: n, predicted (rows
    with a prediction), no_prediction (rows without), accuracy, macro_f1, balanced_accuracy,
    accuracy_predicted (accuracy over the rows with a prediction; None when there are none),
    classes_present (the classes in the labels, the ones balanced accuracy averages over; and
    macro-F1 too with the default ``f1_average="labels"``), per_class (all K classes, as in
    ``compute_metrics``), confusion (K x (K+1) counts, rows = true class, the last column
    ``no_prediction``), confusion_normalized (rows divided by support), confusion_columns
    (``classes`` + [``no_prediction``]), classes.
    """
    classes = [str(c) for c in classes]
    num_classes = len(classes)
    y_true = _check_labels(y_true, num_classes)
    y_pred = _check_predictions(y_pred, y_true, num_classes)
    confusion = _confusion(y_true, y_pred, num_classes)
    if confusion.shape[1] == num_classes:  # every row has a prediction: an empty extra column
        confusion = np.concatenate([confusion, np.zeros((num_classes, 1), dtype=confusion.dtype)], axis=1)
    support = confusion.sum(axis=1)
    confusion_normalized = np.divide(
        confusion, support[:, None], out=np.zeros(confusion.shape, dtype=np.float64), where=support[:, None] > 0
    )
    predicted = y_pred != NO_PREDICTION
    return {
        "n": int(y_true.size),
        "predicted": int(predicted.sum()),
        "no_prediction": int((~predicted).sum()),
        **classification_metrics(y_true, y_pred, num_classes, f1_average),
        "accuracy_predicted": float((y_pred[predicted] == y_true[predicted]).mean()) if predicted.any() else None,
        "classes_present": [classes[k] for k in np.unique(y_true)],
        "per_class": _per_class(confusion, y_true, np.where(predicted, y_pred, num_classes), classes),
        "confusion": confusion.astype(int).tolist(),
        "confusion_normalized": confusion_normalized.tolist(),
        "confusion_columns": [*classes, no_prediction],
        "classes": classes,
    }


def without_leaked(
    labels: np.ndarray, logits: np.ndarray, leaked: np.ndarray, classes: Sequence[str] = CLASSES
) -> dict[str, Any] | None:
    """Headline metrics on the items that are not ``leaked`` (the dataset's ``leaked`` flag): the
    same model and logits, scored as if the split had been de-duplicated against train. None when
    nothing is leaked (the split is already clean) or everything is."""
    leaked = np.asarray(leaked, bool)
    if not leaked.any() or leaked.all():
        return None
    keep = ~leaked
    report = compute_metrics(np.asarray(labels)[keep], np.asarray(logits)[keep], classes)
    return {
        "n": int(keep.sum()), "excluded": int(leaked.sum()),
        **{key: float(report[key]) for key in HEADLINE_KEYS},
        "recall": {row["class"]: float(row["recall"]) for row in report["per_class"]},
    }
