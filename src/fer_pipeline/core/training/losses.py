"""Classification losses for an imbalanced 7-class problem, each a small ``nn.Module``.

Every loss takes ``(logits (B,K), target)`` where ``target`` is either int64 class indices (B,)
or soft labels (B,K) that sum to 1 (mixup / cutmix). Every loss has ``set_epoch(epoch)``
(0-based), a no-op except for LDAM-DRW. Reduction is the mean over the batch, except that
(weighted) cross-entropy with hard targets follows ``F.cross_entropy`` and divides by the
sum of the target weights.

Names for ``build_loss``:

* ``ce``               cross-entropy (+ label smoothing)
* ``weighted_ce``      CE with class weights (``weighting``: inverse_frequency / effective_number)
* ``focal``            focal loss, ``-(1-p_y)^gamma log p_y`` (Lin et al. 2017)
* ``cb_focal``         focal x effective-number weights (Cui et al. 2019)
* ``ldam_drw``         LDAM margins ``m_c ∝ n_c^(-1/4)``, max ``ldam_max_margin``, scale ``s``;
                       deferred re-weighting (effective number) from ``drw_epoch`` on
                       (Cao et al. 2019). Expects cosine logits (``classifier="cosine"``).
                       With soft targets each logit is lowered by its class's target share of
                       its margin (the expected margin; what MixUp's two-label rows get too).
* ``logit_adjusted``   CE on ``logits + tau * log prior`` (Menon et al. 2021)
* ``balanced_softmax`` the same with tau = 1 (Ren et al. 2020)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_pipeline.core.class_balance.weights import class_weights, effective_number_weights, log_priors

LOSS_NAMES = ("ce", "weighted_ce", "focal", "cb_focal", "ldam_drw", "logit_adjusted", "balanced_softmax")


def soft_targets(target: torch.Tensor, num_classes: int, label_smoothing: float = 0.0) -> torch.Tensor:
    """Hard indices or soft labels -> (B,K) float distributions with label smoothing applied."""
    if target.dim() == 1:
        target = F.one_hot(target, num_classes).float()
    target = target.float()
    if label_smoothing > 0:
        target = target * (1.0 - label_smoothing) + label_smoothing / num_classes
    return target


class FERLoss(nn.Module):
    """Base: holds optional class weights as a buffer; ``set_epoch`` does nothing."""

    def __init__(self, weight: Sequence[float] | np.ndarray | torch.Tensor | None = None) -> None:
        super().__init__()
        weight = None if weight is None else torch.as_tensor(np.asarray(weight), dtype=torch.float32)
        self.register_buffer("weight", weight)

    def set_epoch(self, epoch: int) -> None:  # noqa: B027 - deliberately a no-op hook
        """Called by the training loop at the start of every epoch (0-based)."""


class CrossEntropy(FERLoss):
    """(Weighted) cross-entropy with label smoothing; accepts hard or soft targets."""

    def __init__(self, weight=None, label_smoothing: float = 0.0) -> None:
        super().__init__(weight)
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, weight=self.weight, label_smoothing=self.label_smoothing)


class FocalLoss(FERLoss):
    """Per sample ``-sum_c w_c t_c (1 - p_c)^gamma log p_c`` (t: smoothed target), batch mean.

    With hard targets and no smoothing that is ``-w_y (1 - p_y)^gamma log p_y``.
    """

    def __init__(self, gamma: float = 2.0, weight=None, label_smoothing: float = 0.0) -> None:
        super().__init__(weight)
        self.gamma = float(gamma)
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=1)
        t = soft_targets(target, logits.shape[1], self.label_smoothing)
        per_class = -t * (1.0 - log_p.exp()).pow(self.gamma) * log_p
        if self.weight is not None:
            per_class = per_class * self.weight
        return per_class.sum(dim=1).mean()


class LDAMLoss(FERLoss):
    """LDAM with optional deferred re-weighting (DRW).

    Margin ``m_c = C / n_c^(1/4)`` with C chosen so the largest margin is ``max_margin``; the
    true-class logit is lowered by its margin (soft targets t: ``logits - t * m``), scaled by
    ``s``, then (weighted) CE. Before ``drw_epoch`` the weights are ones; from it on they are
    effective-number weights (beta). ``drw_epoch=None`` disables DRW (plain LDAM).
    """

    def __init__(
        self,
        class_counts: Sequence[int] | np.ndarray,
        max_margin: float = 0.5,
        scale: float = 30.0,
        drw_epoch: int | None = None,
        beta: float = 0.999,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(None)
        counts = np.asarray(class_counts, dtype=np.float64)
        margins = 1.0 / np.power(counts, 0.25)
        margins = margins * (max_margin / margins.max())
        self.register_buffer("margins", torch.as_tensor(margins, dtype=torch.float32))
        drw_weights = torch.as_tensor(effective_number_weights(counts, beta), dtype=torch.float32)
        self.register_buffer("drw_weights", drw_weights)
        self.scale = float(scale)
        self.drw_epoch = drw_epoch
        self.label_smoothing = float(label_smoothing)
        self.reweighting = False

    def set_epoch(self, epoch: int) -> None:
        self.reweighting = self.drw_epoch is not None and epoch >= self.drw_epoch

    @property
    def current_weight(self) -> torch.Tensor | None:
        return self.drw_weights if self.reweighting else None

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if target.dim() == 1:
            shifted = logits - F.one_hot(target, logits.shape[1]).float() * self.margins
        else:
            shifted = logits - target.float() * self.margins
        return F.cross_entropy(
            self.scale * shifted, target, weight=self.current_weight, label_smoothing=self.label_smoothing
        )


class LogitAdjustedLoss(FERLoss):
    """CE on ``logits + tau * log(prior)``; at inference the raw logits are used (no adjustment)."""

    def __init__(
        self, class_counts: Sequence[int] | np.ndarray, tau: float = 1.0, label_smoothing: float = 0.0
    ) -> None:
        super().__init__(None)
        self.register_buffer("log_prior", torch.as_tensor(log_priors(class_counts), dtype=torch.float32))
        self.tau = float(tau)
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            logits.float() + self.tau * self.log_prior, target, label_smoothing=self.label_smoothing
        )


class BalancedSoftmaxLoss(LogitAdjustedLoss):
    """Balanced softmax (Ren et al. 2020) = logit adjustment with tau = 1."""

    def __init__(self, class_counts: Sequence[int] | np.ndarray, label_smoothing: float = 0.0) -> None:
        super().__init__(class_counts, tau=1.0, label_smoothing=label_smoothing)


def build_loss(
    name: str,
    class_counts: Sequence[int] | np.ndarray,
    label_smoothing: float = 0.0,
    weighting: str = "effective_number",
    beta: float = 0.999,
    gamma: float = 2.0,
    ldam_max_margin: float = 0.5,
    ldam_scale: float = 30.0,
    drw_epoch: int | None = None,
    tau: float = 1.0,
) -> FERLoss:
    """Loss module by name (see module docstring); class weights come from ``class_counts``."""
    counts = np.asarray(class_counts)
    if name == "ce":
        return CrossEntropy(label_smoothing=label_smoothing)
    if name == "weighted_ce":
        return CrossEntropy(class_weights(counts, weighting, beta), label_smoothing)
    if name == "focal":
        return FocalLoss(gamma, None, label_smoothing)
    if name == "cb_focal":
        return FocalLoss(gamma, effective_number_weights(counts, beta), label_smoothing)
    if name == "ldam_drw":
        return LDAMLoss(counts, ldam_max_margin, ldam_scale, drw_epoch, beta, label_smoothing)
    if name == "logit_adjusted":
        return LogitAdjustedLoss(counts, tau, label_smoothing)
    if name == "balanced_softmax":
        return BalancedSoftmaxLoss(counts, label_smoothing)
    raise ValueError(f"unknown loss {name!r}: use one of {', '.join(LOSS_NAMES)}")
