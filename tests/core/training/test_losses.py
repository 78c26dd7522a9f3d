"""Each loss against a value written out with NumPy on a tiny batch (3 classes, 2 samples)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_pipeline.core.training.losses import LOSS_NAMES, build_loss

LOGITS = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
TARGETS = np.array([0, 2])
COUNTS = np.array([10, 5, 1])


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def loss_value(name: str, targets=TARGETS, logits=LOGITS, epoch: int | None = None, **kwargs) -> float:
    loss = build_loss(name, COUNTS, **kwargs)
    if epoch is not None:
        loss.set_epoch(epoch)
    hard = np.asarray(targets).dtype.kind == "i"
    target = torch.tensor(targets) if hard else torch.tensor(targets, dtype=torch.float32)
    return float(loss(torch.tensor(logits, dtype=torch.float32), target))


def effective_number(counts: np.ndarray, beta: float) -> np.ndarray:
    inverse_effective = (1 - beta) / (1 - beta ** counts.astype(float))
    return inverse_effective * len(counts) / inverse_effective.sum()


def test_cross_entropy():
    logp = log_softmax(LOGITS)
    expected = -(logp[0, 0] + logp[1, 2]) / 2
    assert loss_value("ce") == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_label_smoothing():
    logp = log_softmax(LOGITS)
    smoothed = np.eye(3)[TARGETS] * 0.9 + 0.1 / 3
    expected = -(smoothed * logp).sum(axis=1).mean()
    assert loss_value("ce", label_smoothing=0.1) == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_soft_targets_from_mixup():
    soft = np.array([[0.7, 0.3, 0.0], [0.0, 0.4, 0.6]])
    expected = -(soft * log_softmax(LOGITS)).sum(axis=1).mean()
    assert loss_value("ce", targets=soft) == pytest.approx(expected, rel=1e-6)


def test_weighted_cross_entropy_inverse_frequency():
    weights = 16 / (3 * np.array([10.0, 5.0, 1.0]))  # N / (K n_c)
    logp = log_softmax(LOGITS)
    expected = -(weights[0] * logp[0, 0] + weights[2] * logp[1, 2]) / (weights[0] + weights[2])
    assert loss_value("weighted_ce", weighting="inverse_frequency") == pytest.approx(expected, rel=1e-6)


def test_weighted_cross_entropy_effective_number():
    weights = effective_number(COUNTS, 0.9)
    logp = log_softmax(LOGITS)
    expected = -(weights[0] * logp[0, 0] + weights[2] * logp[1, 2]) / (weights[0] + weights[2])
    assert loss_value("weighted_ce", beta=0.9) == pytest.approx(expected, rel=1e-6)


def test_focal_loss():
    p = np.exp(log_softmax(LOGITS))
    p_true = p[[0, 1], TARGETS]
    expected = np.mean(-((1 - p_true) ** 2) * np.log(p_true))
    assert loss_value("focal", gamma=2.0) == pytest.approx(expected, rel=1e-6)
    # gamma = 0 is plain cross-entropy
    assert loss_value("focal", gamma=0.0) == pytest.approx(loss_value("ce"), rel=1e-6)


def test_class_balanced_focal_loss():
    weights = effective_number(COUNTS, 0.99)
    p = np.exp(log_softmax(LOGITS))
    p_true = p[[0, 1], TARGETS]
    focal = -((1 - p_true) ** 1.5) * np.log(p_true)
    expected = np.mean(weights[TARGETS] * focal)
    assert loss_value("cb_focal", gamma=1.5, beta=0.99) == pytest.approx(expected, rel=1e-6)


def ldam_expected(weights: np.ndarray | None) -> float:
    margins = np.array([10.0, 5.0, 1.0]) ** -0.25
    margins = margins * 0.5 / margins.max()  # the rarest class (n=1) gets 0.5
    shifted = LOGITS.copy()
    shifted[0, 0] -= margins[0]
    shifted[1, 2] -= margins[2]
    logp = log_softmax(30.0 * shifted)
    per_sample = -np.array([logp[0, 0], logp[1, 2]])
    if weights is None:
        return per_sample.mean()
    w = weights[TARGETS]
    return (w * per_sample).sum() / w.sum()


def test_ldam_margins_and_drw_switch():
    before = ldam_expected(None)
    after = ldam_expected(effective_number(COUNTS, 0.999))
    assert before != pytest.approx(after)
    kwargs = {"drw_epoch": 3, "ldam_max_margin": 0.5, "ldam_scale": 30.0, "beta": 0.999}
    assert loss_value("ldam_drw", epoch=0, **kwargs) == pytest.approx(before, rel=1e-5)
    assert loss_value("ldam_drw", epoch=2, **kwargs) == pytest.approx(before, rel=1e-5)
    assert loss_value("ldam_drw", epoch=3, **kwargs) == pytest.approx(after, rel=1e-5)
    assert loss_value("ldam_drw", epoch=7, **kwargs) == pytest.approx(after, rel=1e-5)


def test_ldam_drw_switches_back_and_none_disables():
    loss = build_loss("ldam_drw", COUNTS, drw_epoch=1)
    loss.set_epoch(1)
    assert loss.current_weight is not None
    loss.set_epoch(0)  # e.g. a resumed run re-entering an early epoch
    assert loss.current_weight is None
    plain = build_loss("ldam_drw", COUNTS, drw_epoch=None)
    plain.set_epoch(100)
    assert plain.current_weight is None


def test_logit_adjusted_loss():
    prior = COUNTS / COUNTS.sum()
    logp = log_softmax(LOGITS + 0.5 * np.log(prior))
    expected = -(logp[0, 0] + logp[1, 2]) / 2
    assert loss_value("logit_adjusted", tau=0.5) == pytest.approx(expected, rel=1e-6)


def test_balanced_softmax_is_logit_adjustment_with_tau_one():
    prior = COUNTS / COUNTS.sum()
    logp = log_softmax(LOGITS + np.log(prior))
    expected = -(logp[0, 0] + logp[1, 2]) / 2
    assert loss_value("balanced_softmax") == pytest.approx(expected, rel=1e-6)
    assert loss_value("balanced_softmax", tau=0.3) == pytest.approx(expected, rel=1e-6)  # tau ignored
    assert loss_value("logit_adjusted", tau=1.0) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_every_loss_takes_soft_targets_backprops_and_has_set_epoch(name):
    loss = build_loss(name, COUNTS, label_smoothing=0.1, drw_epoch=0)
    loss.set_epoch(0)
    logits = torch.tensor(LOGITS, dtype=torch.float32, requires_grad=True)
    value = loss(logits, torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]))
    value.backward()
    assert torch.isfinite(value) and logits.grad is not None and logits.grad.abs().sum() > 0


def test_soft_one_hot_targets_equal_hard_targets():
    one_hot = np.eye(3)[TARGETS]
    for name in ("ce", "focal", "logit_adjusted"):
        assert loss_value(name, targets=one_hot) == pytest.approx(loss_value(name), rel=1e-6)


def test_unknown_loss_name():
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("hinge", COUNTS)
