"""The classifier's training configuration (``TrainConfig``), its outcome (``TrainResult``) and
the constants around them: the selection metrics, the samplers, and which fields a resume or the
pipeline treats specially."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from fer_pipeline.core.config import from_params
from fer_pipeline.core.device import amp_mode
from fer_pipeline.core.training.losses import LOSS_NAMES

SELECT_METRICS = ("macro_f1", "accuracy", "balanced_accuracy")
SAMPLERS = ("shuffle", "class_balanced", "sqrt")

#: TrainConfig fields that do not change the trained weights: a checkpoint written under
#: other values of these can still be resumed.
RESUME_NEUTRAL_FIELDS = ("checkpoint_dir", "resume", "device", "eval_batch_size", "compile")

#: TrainConfig fields whose API default (None) the pipeline's parameters replace: where to write
#: checkpoints (none unless asked), and the DRW epoch (None: 0.8 x epochs, for any schedule; conf
#: fixes epoch 40 of its 60). Every other default equals conf/base/parameters_training.yml.
PIPELINE_CHOSEN_FIELDS = ("checkpoint_dir", "drw_epoch")


@dataclass
class TrainConfig:
    """Training hyper-parameters; the defaults are the pipeline's (conf/base; see
    ``PIPELINE_CHOSEN_FIELDS`` for the two it sets itself), so a run from the API and ``kedro run``
    train alike. Build from a params dict with ``TrainConfig.from_dict``."""

    epochs: int = 60
    batch_size: int = 256
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    decay_norm_and_bias: bool = False  # False: no weight decay on BatchNorm / bias parameters
    schedule: str = "cosine"  # cosine (linear warmup + cosine to 0) | onecycle
    warmup_epochs: float = 3.0  # onecycle: its rise fraction = warmup_epochs / epochs (0 -> 0.3)
    loss: str = "ce"  # see core.training.losses.LOSS_NAMES
    label_smoothing: float = 0.1
    weighting: str = "effective_number"  # class weights for weighted_ce
    beta: float = 0.999  # effective-number beta (cb_focal, weighted_ce, DRW)
    gamma: float = 2.0  # focal
    ldam_max_margin: float = 0.5
    ldam_scale: float = 30.0
    drw_epoch: int | None = None  # None: int(0.8 * epochs) (Cao et al.: 160 of 200)
    tau: float = 1.0  # logit adjustment
    amp: bool | str = "auto"  # auto | on | off: bf16 autocast where native (core.device.AMP_MODES)
    channels_last: bool = True  # CUDA, and CPU in bf16 (in float32 on CPU it slows small convs down)
    compile: bool = False
    ema: bool = True
    ema_decay: float = 0.999
    sampler: str = "shuffle"  # shuffle | class_balanced | sqrt
    select_metric: str = "macro_f1"  # macro_f1 | accuracy | balanced_accuracy
    early_stopping_patience: int | None = None  # None / 0: off
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    checkpoint_dir: str | None = None
    resume: bool = True
    eval_batch_size: int = 512
    aux_weight: float = 0.0  # weight of the reconstruction loss (model needs aux_reconstruction)
    steps_per_epoch: int | None = None  # None: len(train) // batch_size

    def __post_init__(self) -> None:
        choices = {
            "optimizer": ("sgd", "adamw"),
            "schedule": ("cosine", "onecycle"),
            "loss": LOSS_NAMES,
            "sampler": SAMPLERS,
            "select_metric": SELECT_METRICS,
            "weighting": ("none", "inverse_frequency", "effective_number"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: use one of {', '.join(allowed)}")
        self.amp = amp_mode(self.amp)
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"TrainConfig.steps_per_epoch must be >= 1 or None, got {self.steps_per_epoch}")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1), got {self.ema_decay}")

    @classmethod
    def from_dict(cls, params: Mapping[str, Any]) -> TrainConfig:
        """Build from a params dict; unknown keys are an error (typos must not pass silently)."""
        return from_params(cls, params, "training")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """Outcome of ``train_classifier``; ``model`` holds the best weights, in eval mode."""

    model: nn.Module
    config: dict[str, Any]  # model config for core.models.save_model, with the class names
    history: list[dict[str, float]]
    best_epoch: int
    best_metrics: dict[str, float]
    device_info: dict[str, Any]
    resumed_from_epoch: int | None = None  # epochs already done when resumed, else None
    stopped_early: bool = False
    train_config: dict[str, Any] = field(default_factory=dict)  # TrainConfig.to_dict()
