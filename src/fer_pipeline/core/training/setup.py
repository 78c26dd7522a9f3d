"""What one training run builds before its first epoch, and what it saves and restores between epochs.

``build_setup`` seeds every RNG and builds the data path (the faces on the device, the on-device
augmentation, MixUp / CutMix, the sampler's weights), the model and its wrappers (SyncBatchNorm and
DistributedDataParallel in a process group, channels-last, ``torch.compile``, the EMA copy), the
loss, the optimiser and the schedule: a ``TrainingSetup``. ``TrainingProgress`` is what the epochs
have produced; ``resume_progress`` reads it back from ``last.pt`` and ``save_last_checkpoint``
writes it there (``core.training.checkpoint``). The input checks, the training targets' form and
the deterministic mode live here too.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.device import autocast_dtype_for, channels_last_pays, describe_precision
from fer_pipeline.core.models import build_resnet34, model_config
from fer_pipeline.core.pixels import MEAN, STD
from fer_pipeline.core.training import checkpoint
from fer_pipeline.core.training.config import RESUME_NEUTRAL_FIELDS, TrainConfig
from fer_pipeline.core.training.distributed import World, broadcast_from_main, check_global_batch, sync_batch_norm
from fer_pipeline.core.training.losses import FERLoss, build_loss
from fer_pipeline.core.training.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)


@dataclass
class TrainingSetup:
    """What one run builds once: the model and its wrappers, loss, optimiser, data on the device."""

    device: torch.device
    model: nn.Module  # the weights the optimiser updates
    train_model: nn.Module  # model, or torch.compile(model)
    eval_model: nn.Module  # the weights validated and kept: the EMA copy when ema is on
    ema: nn.Module | None
    criterion: FERLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    config: dict[str, Any]  # model config (core.models.model_config)
    model_kwargs: dict[str, Any]
    augment: nn.Module | None
    mix: Callable | None
    sample_weights: torch.Tensor | None
    generator: torch.Generator
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    steps_per_epoch: int
    batch_size: int
    channels_last: bool
    autocast_dtype: torch.dtype | None
    world: World = World()  # this process among the training processes (core.training.distributed)
    fingerprint: str | None = None  # of configuration and data, when checkpoints are written


@dataclass
class TrainingProgress:
    """What the epochs have produced so far; saved in and restored from ``last.pt``."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_metrics: dict[str, float] = field(default_factory=dict)
    best_state: dict[str, torch.Tensor] | None = None
    start_epoch: int = 0
    resumed_from: int | None = None
    stopped_early: bool = False



# --------------------------------------------------------------------------------------------
# The inputs
# --------------------------------------------------------------------------------------------


def check_faces(name: str, images: np.ndarray, labels: np.ndarray) -> None:
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"{name}_images must be uint8 (N,H,W), got {images.dtype} {images.shape}")
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"{name}: {len(images)} images, {len(labels)} labels (need a matching non-empty set)")


def check_soft_targets(targets: np.ndarray, num_classes: int) -> None:
    """(N, K) rows of non-negative weights summing to 1 (class probabilities)."""
    if targets.shape[1] != num_classes:
        raise ValueError(f"soft targets have {targets.shape[1]} columns for {num_classes} classes")
    if (targets < 0).any() or not np.allclose(targets.sum(1), 1.0, atol=1e-3):
        raise ValueError("soft targets must be non-negative rows summing to 1 (class probabilities)")


def check_data(data: tuple[np.ndarray, ...], num_classes: int, world: World) -> None:
    """Train and val faces with matching labels (soft training targets: ``num_classes`` columns of
    class probabilities), and at least one val face per training process."""
    train_images, train_labels, val_images, val_labels = data
    check_faces("train", train_images, train_labels)
    check_faces("val", val_images, val_labels)
    if np.asarray(train_labels).ndim == 2:
        check_soft_targets(np.asarray(train_labels), num_classes)
    if len(val_images) < world.size:
        raise ValueError(f"val: {len(val_images)} images for {world.size} training processes (need one each)")


def model_arguments(cfg: TrainConfig, model_cfg: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``build_resnet34`` keyword arguments from ``model_cfg`` (a cosine head for ``ldam_drw``
    unless one is named), and the class names (``model_cfg["classes"]``, default ``CLASSES``)."""
    model_kwargs = dict(model_cfg)
    classes = list(model_kwargs.pop("classes", CLASSES))
    if cfg.loss == "ldam_drw" and "classifier" not in model_kwargs:
        # LDAM's scale s assumes cosine logits (Cao et al. 2019 use a normalised linear head).
        model_kwargs["classifier"] = "cosine"
        log.info("loss ldam_drw: using a cosine classifier head")
    return model_kwargs, classes


def as_targets(labels: np.ndarray) -> np.ndarray:
    """Training targets as stored and fingerprinted: int64 class indices (N,), or float32 soft
    targets (N, K)."""
    return np.asarray(labels, dtype=np.float32 if np.ndim(labels) == 2 else np.int64)


def hard_labels(targets: np.ndarray) -> np.ndarray:
    """Class indices of int labels (N,) or soft targets (N, K) (their most probable class)."""
    targets = np.asarray(targets)
    return targets.astype(np.int64) if targets.ndim == 1 else targets.argmax(1).astype(np.int64)


def run_fingerprint(cfg: TrainConfig, model_kwargs: Mapping[str, Any], setup: TrainingSetup,
                    augment_policy: Mapping[str, Any] | None, class_counts: np.ndarray,
                    data: tuple[np.ndarray, ...]) -> str:
    """The fingerprint of configuration and data that a checkpoint must carry to be resumed (the
    ``RESUME_NEUTRAL_FIELDS`` left out)."""
    train_images, train_labels, val_images, val_labels = data
    resume_cfg = {k: v for k, v in cfg.to_dict().items() if k not in RESUME_NEUTRAL_FIELDS}
    return checkpoint.fingerprint(
        resume_cfg, model_kwargs, setup.config, augment_policy, class_counts.tolist(),
        np.asarray(train_images), as_targets(train_labels),
        np.asarray(val_images), np.asarray(val_labels, dtype=np.int64))


@contextlib.contextmanager
def deterministic_mode(enabled: bool, device: torch.device) -> Iterator[None]:
    """Deterministic kernels (and no cuDNN autotuning) inside, the global flags restored after."""
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_benchmark = torch.backends.cudnn.benchmark
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # On CUDA a few ops (e.g. bilinear upsampling backward) have no deterministic kernel:
        # warn instead of failing there. On CPU everything used here is deterministic.
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    torch.backends.cudnn.benchmark = not enabled
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)
        torch.backends.cudnn.benchmark = previous_benchmark



# --------------------------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------------------------


def _augmentation(
    augment_policy: Mapping[str, Any] | None, device: torch.device, num_classes: int, soft: bool, face_size: int,
) -> tuple[nn.Module | None, Callable | None, int]:
    """The on-device ``BatchAugment``, the MixUp / CutMix (its soft-target form for soft targets)
    and the model input size (the policy's crop; without a policy the whole face)."""
    augment, mix, input_size = None, None, face_size
    if augment_policy is not None:
        from fer_pipeline.core.augmentation.transforms import BatchAugment, build_mixup_cutmix

        augment = BatchAugment(augment_policy).to(device)
        input_size = augment.crop_size
        mix = build_mixup_cutmix(augment_policy, num_classes)
    if mix is not None and soft:
        from fer_pipeline.core.augmentation.transforms import SoftTargetMix

        mix = SoftTargetMix(augment_policy)
    return augment, mix, input_size


def _sample_weights(sampler: str, train_labels: np.ndarray, num_classes: int,
                    device: torch.device) -> torch.Tensor | None:
    """The sampler's per-face draw weights on the device; None: a plain shuffle."""
    if sampler == "shuffle":
        return None
    from fer_pipeline.core.augmentation.transforms import sampling_weights

    weights = sampling_weights(hard_labels(train_labels), sampler, num_classes)
    if weights is None:
        return None
    return torch.as_tensor(np.asarray(weights), dtype=torch.float64, device=device)


def _model(
    cfg: TrainConfig, device: torch.device, model_kwargs: Mapping[str, Any], world: World,
) -> tuple[nn.Module, torch.dtype | None, bool]:
    """The model on the device (SyncBatchNorm in a process group, channels-last where it pays),
    its autocast dtype (None: full precision) and whether it is channels-last."""
    model = build_resnet34(**model_kwargs).to(device)
    if world.distributed:
        model = sync_batch_norm(model, device)
    autocast_dtype = autocast_dtype_for(cfg.amp, device)
    channels_last = cfg.channels_last and channels_last_pays(device, autocast_dtype)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, autocast_dtype, channels_last


def _model_file_config(model_kwargs: Mapping[str, Any], num_classes: int, classes: list[str],
                       input_size: int) -> dict[str, Any]:
    """The model config stored with the weights (``core.models.model_config``)."""
    return model_config(
        arch=model_kwargs.get("arch", "resnet34"), stem=model_kwargs.get("stem", "small"),
        in_channels=int(model_kwargs.get("in_channels", 1)), num_classes=num_classes, classes=classes,
        input_size=input_size, mean=MEAN, std=STD, aux_reconstruction=bool(model_kwargs.get("aux_reconstruction")),
        dropout=float(model_kwargs.get("dropout", 0.0)), classifier=model_kwargs.get("classifier", "linear"),
    )


def _check_aux_head(cfg: TrainConfig, model: nn.Module) -> None:
    if cfg.aux_weight > 0 and not model.has_aux:
        raise ValueError("aux_weight > 0 needs model_cfg aux_reconstruction=True")
    if model.has_aux and cfg.aux_weight <= 0:
        log.warning("model has a reconstruction head but aux_weight is 0: the head is not trained")


def _criterion(cfg: TrainConfig, class_counts: np.ndarray, device: torch.device) -> FERLoss:
    """``cfg.loss`` on the device; the DRW epoch defaults to 0.8 x epochs."""
    return build_loss(
        cfg.loss, class_counts, label_smoothing=cfg.label_smoothing, weighting=cfg.weighting, beta=cfg.beta,
        gamma=cfg.gamma, ldam_max_margin=cfg.ldam_max_margin, ldam_scale=cfg.ldam_scale,
        drw_epoch=cfg.drw_epoch if cfg.drw_epoch is not None else int(0.8 * cfg.epochs), tau=cfg.tau,
    ).to(device)


def _ema(model: nn.Module, cfg: TrainConfig) -> nn.Module | None:
    """The EMA copy of ``model`` (buffers averaged too) when ``cfg.ema``."""
    if not cfg.ema:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)


def _data_parallel(model: nn.Module, cfg: TrainConfig, device: torch.device, world: World) -> nn.Module:
    """``model`` in DistributedDataParallel in a process group, else itself."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    # A reconstruction head that no loss uses gets no gradient: DDP must be told, or it waits for one.
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=bool(model.has_aux and cfg.aux_weight <= 0))


def _on_device(array: np.ndarray, device: torch.device, dtype: np.dtype | None = None) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=dtype)).to(device)


def build_setup(
    cfg: TrainConfig, device: torch.device, data: tuple[np.ndarray, ...], class_counts: np.ndarray,
    model_kwargs: dict[str, Any], classes: list[str], augment_policy: Mapping[str, Any] | None,
    world: World = World(),
) -> TrainingSetup:
    """Seed every RNG, then build the data path, the model, its loss, optimiser and schedule.

    In a process group every rank seeds alike, so all draw the same global batches and start from
    the same weights; the model's BatchNorms use the global batch's statistics
    (``core.training.distributed.sync_batch_norm``) and DistributedDataParallel averages the gradients.
    Torch's global RNG stays alike on every rank too, so MixUp/CutMix draw one mixing weight per
    step as in one process (and dropout, when on, the same masks at the same batch positions)."""
    train_images, train_labels, val_images, val_labels = data
    checkpoint.seed_everything(cfg.seed)
    generator = torch.Generator(device=device)
    generator.manual_seed(cfg.seed)
    num_classes = int(model_kwargs.get("num_classes", len(CLASSES)))
    augment, mix, input_size = _augmentation(augment_policy, device, num_classes,
                                             soft=np.asarray(train_labels).ndim == 2,
                                             face_size=int(train_images.shape[-1]))
    sample_weights = _sample_weights(cfg.sampler, train_labels, num_classes, device)
    model, autocast_dtype, channels_last = _model(cfg, device, model_kwargs, world)
    config = _model_file_config(model_kwargs, num_classes, classes, input_size)
    _check_aux_head(cfg, model)
    criterion = _criterion(cfg, class_counts, device)
    batch_size = min(cfg.batch_size, len(train_images))
    check_global_batch(batch_size, world.size)
    steps_per_epoch = cfg.steps_per_epoch or max(1, len(train_images) // batch_size)
    optimizer = build_optimizer(model, cfg)
    ema = _ema(model, cfg)
    train_model = _data_parallel(model, cfg, device, world)
    if world.rank == 0:
        log.info("precision: %s", describe_precision(cfg.amp, device))
    return TrainingSetup(
        device=device, model=model, train_model=torch.compile(train_model) if cfg.compile else train_model,
        eval_model=ema.module if ema is not None else model, ema=ema, criterion=criterion, optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg, steps_per_epoch), config=config, model_kwargs=model_kwargs,
        augment=augment, mix=mix, sample_weights=sample_weights, generator=generator,
        x_train=_on_device(train_images, device), y_train=torch.from_numpy(as_targets(train_labels)).to(device),
        x_val=_on_device(val_images, device), y_val=_on_device(val_labels, device, np.int64),
        steps_per_epoch=steps_per_epoch, batch_size=batch_size, channels_last=channels_last,
        autocast_dtype=autocast_dtype, world=world,
    )


# --------------------------------------------------------------------------------------------
# Between epochs: last.pt
# --------------------------------------------------------------------------------------------


def resume_progress(setup: TrainingSetup, cfg: TrainConfig, checkpoint_dir: Path) -> TrainingProgress:
    """The progress stored in ``checkpoint_dir/last.pt`` when it matches this run, loaded into
    the model, optimiser, schedule, EMA and RNGs; else a fresh start. In a process group rank 0
    (the one that writes it) reads it and every rank gets its content, so all resume alike even
    where the others cannot see rank 0's disk. (On CUDA the saved CUDA RNG states are rank 0's, so
    a resumed multi-GPU run matches an uninterrupted one to float noise, not bit for bit.)"""
    state = None
    if cfg.resume and setup.world.is_main:
        state = checkpoint.load_matching(checkpoint_dir / "last.pt", setup.fingerprint)
    state = broadcast_from_main(state, setup.world)
    if state is None:
        return TrainingProgress()
    setup.model.load_state_dict(state["model"])
    setup.optimizer.load_state_dict(state["optimizer"])
    setup.scheduler.load_state_dict(state["scheduler"])
    if setup.ema is not None:
        setup.ema.load_state_dict(state["ema"])
    checkpoint.set_rng_state(state["rng"], setup.generator)
    log.info("resumed from %s after epoch %d", checkpoint_dir / "last.pt", state["epoch"])
    return TrainingProgress(
        history=list(state["history"]), best_epoch=state["best_epoch"], best_metrics=dict(state["best_metrics"]),
        # None: the checkpointed epoch was the best one, and its weights are the evaluated model's
        best_state=state["best_state"] if state["best_state"] is not None else checkpoint.cpu_state(setup.eval_model),
        start_epoch=int(state["epoch"]) + 1, resumed_from=int(state["epoch"]) + 1,
        stopped_early=bool(state["stopped_early"]),
    )


def save_last_checkpoint(setup: TrainingSetup, progress: TrainingProgress, epoch: int, checkpoint_dir: Path) -> None:
    checkpoint.atomic_save(
        {
            "version": checkpoint.CHECKPOINT_VERSION,
            "fingerprint": setup.fingerprint,
            "epoch": epoch,
            "model": setup.model.state_dict(),
            "optimizer": setup.optimizer.state_dict(),
            "scheduler": setup.scheduler.state_dict(),
            "ema": setup.ema.state_dict() if setup.ema is not None else None,
            "history": progress.history,
            "best_epoch": progress.best_epoch,
            "best_metrics": progress.best_metrics,
            # the evaluated weights of this epoch are already stored when it is the best
            "best_state": None if progress.best_epoch == epoch else progress.best_state,
            "stopped_early": progress.stopped_early,
            "rng": checkpoint.rng_state(setup.generator),
            "model_config": setup.config,
        },
        checkpoint_dir / "last.pt",
    )
