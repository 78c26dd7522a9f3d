"""The classifier's optimiser (SGD with Nesterov momentum, or AdamW) and per-step LR schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from fer_pipeline.core.training.config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW; BatchNorm / bias parameters without weight decay by default."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 and not cfg.decay_norm_and_bias else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule: linear warmup + cosine to zero, or one-cycle."""
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total_steps - 1)
    if cfg.schedule == "onecycle":
        pct_start = warmup_steps / total_steps if warmup_steps > 0 else 0.3
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=total_steps, pct_start=max(pct_start, 1e-6),
            cycle_momentum=cfg.optimizer == "sgd" and cfg.momentum > 0,
        )

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
