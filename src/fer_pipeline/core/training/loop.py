"""The FER classifier's training loop, in the shape of torchvision's classification reference.

``train_one_epoch`` runs the optimiser over one epoch of batches; ``evaluate`` scores a model on
the validation split (``core.inference.predict_logits`` and ``core.metrics``, as the evaluation
stage does); ``train_classifier`` is the driver: build, resume, then per epoch train, validate,
keep the best, checkpoint. Every trick is a ``TrainConfig`` flag: ``amp`` (bf16 autocast),
``channels_last``, ``compile``, ``ema``, ``resume`` (with ``checkpoint_dir``), the loss, the
sampler, ``aux_weight``; mixup / cutmix are part of the augmentation policy.

Data path (no DataLoader, no per-image Python): the uint8 faces are moved to the device once;
each step indexes a batch there (a per-epoch ``randperm``, or ``multinomial`` over sampling
weights), converts it to float, augments it with ``core.augment.BatchAugment`` on the device,
optionally mixes it, normalises it and runs the model. The only host sync per epoch is reading
the summed loss.

Validation each epoch: centre crop to the input size, plain CE loss, accuracy, macro-F1 and
balanced accuracy. The best epoch by ``select_metric`` on the validation split is kept (the
EMA weights when ``ema`` is on). Epochs are 0-based everywhere (history, ``set_epoch``,
``best_epoch``, ``drw_epoch``).

Checkpoints (``checkpoint_dir``, see ``core.checkpoint``): ``last.pt`` after every epoch (model,
optimiser, scheduler, EMA, best weights so far, history, every RNG state), and ``best.pt`` as a
regular model file (``core.models.load_model`` reads it). ``resume=True`` continues from
``last.pt`` when it was written by the same configuration and data; in deterministic mode on
CPU a resumed run ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.config import from_params
from fer_pipeline.core.device import (
    amp_mode,
    autocast_dtype_for,
    channels_last_pays,
    describe_precision,
    device_info,
    precision_name,
    resolve_device,
)
from fer_pipeline.core.evaluation.metrics import classification_metrics
from fer_pipeline.core.inference import predict_logits
from fer_pipeline.core.models import build_resnet34, model_config, save_model, unwrap_model
from fer_pipeline.core.pixels import MEAN, STD
from fer_pipeline.core.training import checkpoint
from fer_pipeline.core.training.batches import epoch_batch_indices, prepare_train_batch
from fer_pipeline.core.training.distributed import (
    World,
    all_gather_rows,
    all_reduce_mean,
    broadcast_from_main,
    check_global_batch,
    current_world,
    rank_batch,
    rank_rows,
    sync_batch_norm,
    worker_device,
)
from fer_pipeline.core.training.losses import LOSS_NAMES, FERLoss, build_loss
from fer_pipeline.core.training.optim import build_optimizer, build_scheduler

try:
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover - tqdm is optional on the GPU box
    tqdm = None

log = logging.getLogger(__name__)

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
    loss: str = "ce"  # see core.losses.LOSS_NAMES
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


# --------------------------------------------------------------------------------------------
# One epoch, and validation
# --------------------------------------------------------------------------------------------


def train_one_epoch(
    model: nn.Module,
    criterion: FERLoss,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    autocast_dtype: torch.dtype | None = None,
    ema: nn.Module | None = None,
    aux_weight: float = 0.0,
    progress: tqdm | None = None,
    world: World = World(),
) -> dict[str, float]:
    """One epoch of optimiser steps over ``batches`` (model inputs and targets on the device).

    Per step: forward under autocast (``autocast_dtype``; None = full precision), the loss in
    float32 (plus ``aux_weight`` times the MSE of the model's reconstruction head), backward,
    step, the per-step LR schedule, the EMA update. Returns the epoch's mean ``loss``, the ``lr``
    of its last step and, with the reconstruction head, ``recon_loss``; the loss sums stay on
    the device until the end (one host sync per epoch). In a process group (``world``) the
    losses are averaged over the ranks, so every rank reports the global batch's.
    """
    model.train()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    recon_sum = torch.zeros((), device=device)
    steps, lr = 0, optimizer.param_groups[0]["lr"]
    ema_source = unwrap_model(model)  # the plain module under torch.compile: what the EMA averages
    for x, y in batches:
        with torch.autocast(device.type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
            if aux_weight > 0:
                logits, reconstruction = model(x, with_aux=True)
                recon_loss = F.mse_loss(reconstruction.float(), x.float())
                loss = criterion(logits.float(), y) + aux_weight * recon_loss
                recon_sum += recon_loss.detach()
            else:
                loss = criterion(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        if ema is not None:
            ema.update_parameters(ema_source)
        loss_sum += loss.detach()
        steps += 1
        if progress is not None:
            progress.update()
    if steps == 0:
        raise ValueError("train_one_epoch got no batches")
    sums = all_reduce_mean(torch.stack([loss_sum, recon_sum]), world).tolist()
    metrics = {"loss": sums[0] / steps, "lr": float(lr)}
    if aux_weight > 0:
        metrics["recon_loss"] = sums[1] / steps
    return metrics


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    input_size: int,
    in_channels: int = 1,
    batch_size: int = 512,
    channels_last: bool = False,
    autocast_dtype: torch.dtype | None = None,
    world: World = World(),
) -> dict[str, float]:
    """Centre-crop validation of uint8 faces (N,H,W) on the model's device: ``loss`` (plain CE),
    accuracy, macro_f1, balanced_accuracy. Inference and metrics are the evaluation stage's own
    (``core.inference.predict_logits``, ``core.metrics.classification_metrics``). In a process
    group each rank scores its share of the faces and every rank gets the metrics of all."""
    config = {"input_size": input_size, "in_channels": in_channels, "mean": MEAN, "std": STD}
    share = rank_rows(len(images), world)
    logits = predict_logits(model, images[share], config, tta="none", batch_size=batch_size, device=images.device,
                            progress=False, channels_last=channels_last, amp="on" if autocast_dtype is not None else "off")
    logits = all_gather_rows(logits, world)
    target = labels.detach().cpu()
    loss = F.cross_entropy(torch.from_numpy(logits).double(), target)
    return {"loss": float(loss), **classification_metrics(target.numpy(), logits.argmax(1), logits.shape[1])}


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------


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
    world: World = World()  # this process among the training processes (core.distributed)
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


def _check_faces(name: str, images: np.ndarray, labels: np.ndarray) -> None:
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"{name}_images must be uint8 (N,H,W), got {images.dtype} {images.shape}")
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"{name}: {len(images)} images, {len(labels)} labels (need a matching non-empty set)")


def _check_soft_targets(targets: np.ndarray, num_classes: int) -> None:
    """(N, K) rows of non-negative weights summing to 1 (class probabilities)."""
    if targets.shape[1] != num_classes:
        raise ValueError(f"soft targets have {targets.shape[1]} columns for {num_classes} classes")
    if (targets < 0).any() or not np.allclose(targets.sum(1), 1.0, atol=1e-3):
        raise ValueError("soft targets must be non-negative rows summing to 1 (class probabilities)")


def as_targets(labels: np.ndarray) -> np.ndarray:
    """Training targets as stored and fingerprinted: int64 class indices (N,), or float32 soft
    targets (N, K)."""
    return np.asarray(labels, dtype=np.float32 if np.ndim(labels) == 2 else np.int64)


def hard_labels(targets: np.ndarray) -> np.ndarray:
    """Class indices of int labels (N,) or soft targets (N, K) (their most probable class)."""
    targets = np.asarray(targets)
    return targets.astype(np.int64) if targets.ndim == 1 else targets.argmax(1).astype(np.int64)


@contextlib.contextmanager
def _deterministic_mode(enabled: bool, device: torch.device) -> Iterator[None]:
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


def _build(
    cfg: TrainConfig, device: torch.device, data: tuple[np.ndarray, ...], class_counts: np.ndarray,
    model_kwargs: dict[str, Any], classes: list[str], augment_policy: Mapping[str, Any] | None,
    world: World = World(),
) -> TrainingSetup:
    """Seed every RNG, then build the data path, the model, its loss, optimiser and schedule.

    In a process group every rank seeds alike, so all draw the same global batches and start from
    the same weights; the model's BatchNorms use the global batch's statistics
    (``core.distributed.sync_batch_norm``) and DistributedDataParallel averages the gradients.
    Torch's global RNG stays alike on every rank too, so MixUp/CutMix draw one mixing weight per
    step as in one process (and dropout, when on, the same masks at the same batch positions)."""
    train_images, train_labels, val_images, val_labels = data
    checkpoint.seed_everything(cfg.seed)
    generator = torch.Generator(device=device)
    generator.manual_seed(cfg.seed)
    num_classes = int(model_kwargs.get("num_classes", len(CLASSES)))
    augment, mix, sample_weights, input_size = None, None, None, int(train_images.shape[-1])
    if augment_policy is not None:
        from fer_pipeline.core.augmentation.transforms import BatchAugment, build_mixup_cutmix

        augment = BatchAugment(augment_policy).to(device)
        input_size = augment.crop_size
        mix = build_mixup_cutmix(augment_policy, num_classes)
    soft = np.asarray(train_labels).ndim == 2
    if mix is not None and soft:
        from fer_pipeline.core.augmentation.transforms import SoftTargetMix

        mix = SoftTargetMix(augment_policy)
    if cfg.sampler != "shuffle":
        from fer_pipeline.core.augmentation.transforms import sampling_weights

        weights = sampling_weights(hard_labels(train_labels), cfg.sampler, num_classes)
        if weights is not None:
            sample_weights = torch.as_tensor(np.asarray(weights), dtype=torch.float64, device=device)

    model = build_resnet34(**model_kwargs).to(device)
    if world.distributed:
        model = sync_batch_norm(model, device)
    autocast_dtype = autocast_dtype_for(cfg.amp, device)
    channels_last = cfg.channels_last and channels_last_pays(device, autocast_dtype)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    config = model_config(
        arch=model_kwargs.get("arch", "resnet34"), stem=model_kwargs.get("stem", "small"),
        in_channels=int(model_kwargs.get("in_channels", 1)), num_classes=num_classes, classes=classes,
        input_size=input_size, mean=MEAN, std=STD, aux_reconstruction=bool(model_kwargs.get("aux_reconstruction")),
        dropout=float(model_kwargs.get("dropout", 0.0)), classifier=model_kwargs.get("classifier", "linear"),
    )
    if cfg.aux_weight > 0 and not model.has_aux:
        raise ValueError("aux_weight > 0 needs model_cfg aux_reconstruction=True")
    if model.has_aux and cfg.aux_weight <= 0:
        log.warning("model has a reconstruction head but aux_weight is 0: the head is not trained")
    criterion = build_loss(
        cfg.loss, class_counts, label_smoothing=cfg.label_smoothing, weighting=cfg.weighting, beta=cfg.beta,
        gamma=cfg.gamma, ldam_max_margin=cfg.ldam_max_margin, ldam_scale=cfg.ldam_scale,
        drw_epoch=cfg.drw_epoch if cfg.drw_epoch is not None else int(0.8 * cfg.epochs), tau=cfg.tau,
    ).to(device)
    batch_size = min(cfg.batch_size, len(train_images))
    check_global_batch(batch_size, world.size)
    steps_per_epoch = cfg.steps_per_epoch or max(1, len(train_images) // batch_size)
    optimizer = build_optimizer(model, cfg)
    ema = None
    if cfg.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)

    def on_device(array: np.ndarray, dtype: np.dtype | None = None) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=dtype)).to(device)

    train_model: nn.Module = model
    if world.distributed:
        from torch.nn.parallel import DistributedDataParallel

        # A reconstruction head that no loss uses gets no gradient: DDP must be told, or it waits for one.
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                              find_unused_parameters=bool(model.has_aux and cfg.aux_weight <= 0))
    if world.rank == 0:
        log.info("precision: %s", describe_precision(cfg.amp, device))
    return TrainingSetup(
        device=device, model=model, train_model=torch.compile(train_model) if cfg.compile else train_model,
        eval_model=ema.module if ema is not None else model, ema=ema, criterion=criterion, optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg, steps_per_epoch), config=config, model_kwargs=model_kwargs,
        augment=augment, mix=mix, sample_weights=sample_weights, generator=generator,
        x_train=on_device(train_images), y_train=torch.from_numpy(as_targets(train_labels)).to(device),
        x_val=on_device(val_images), y_val=on_device(val_labels, np.int64), steps_per_epoch=steps_per_epoch,
        batch_size=batch_size, channels_last=channels_last, autocast_dtype=autocast_dtype,
        world=world,
    )


def _resume(setup: TrainingSetup, cfg: TrainConfig, checkpoint_dir: Path) -> TrainingProgress:
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


def _save_checkpoint(setup: TrainingSetup, progress: TrainingProgress, epoch: int, checkpoint_dir: Path) -> None:
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


def _run_epoch(setup: TrainingSetup, cfg: TrainConfig, epoch: int, show_progress: bool) -> dict[str, float]:
    """Train one epoch, validate the kept weights: the epoch's history row."""
    start = time.perf_counter()
    setup.criterion.set_epoch(epoch)
    indices = epoch_batch_indices(len(setup.x_train), setup.steps_per_epoch, setup.batch_size, setup.generator,
                                  setup.device, setup.sample_weights)
    # Every rank drew the same global batches; each trains on its own slice of every one.
    indices = rank_batch(indices, setup.world)
    augment_generator = setup.generator
    if setup.world.distributed and setup.augment is not None:
        # Ranks must not repeat each other's random crops: their own stream, re-seeded per epoch
        # (so a resume under any number of processes needs no saved state for it).
        augment_generator = torch.Generator(device=setup.device)
        seed = np.random.SeedSequence([cfg.seed, setup.world.rank, epoch]).generate_state(1)[0]
        augment_generator.manual_seed(int(seed))
    in_channels = setup.config["in_channels"]
    batches = (prepare_train_batch(setup.x_train, setup.y_train, step, setup.augment, setup.mix, in_channels,
                                   setup.channels_last, augment_generator) for step in indices)
    bar = tqdm(total=setup.steps_per_epoch, desc=f"epoch {epoch}/{cfg.epochs - 1}", leave=False,
               disable=not (show_progress and setup.world.is_main)) if tqdm is not None else None
    try:
        train = train_one_epoch(setup.train_model, setup.criterion, setup.optimizer, setup.scheduler, batches,
                                setup.autocast_dtype, setup.ema, cfg.aux_weight, bar, setup.world)
    finally:
        if bar is not None:
            bar.close()
    train_seconds = time.perf_counter() - start
    val = evaluate(setup.eval_model, setup.x_val, setup.y_val, setup.config["input_size"], in_channels,
                   cfg.eval_batch_size, setup.channels_last, setup.autocast_dtype, setup.world)
    row = {"epoch": epoch, "train_loss": train["loss"], **{f"val_{key}": value for key, value in val.items()},
           "lr": train["lr"], "epoch_seconds": time.perf_counter() - start,
           "images_per_s": setup.steps_per_epoch * setup.batch_size / train_seconds}
    if "recon_loss" in train:
        row["train_recon_loss"] = train["recon_loss"]
    return row


def train_classifier(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    class_counts: np.ndarray | list[int],
    model_cfg: Mapping[str, Any],
    train_cfg: TrainConfig | Mapping[str, Any],
    augment_policy: Mapping[str, Any] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a ``build_resnet34(**model_cfg)`` classifier; select the best epoch on val.

    ``train_images`` / ``val_images``: uint8 (N,H,W); labels int64, or for training (N, K) float
    soft targets (FER+ vote distributions; every loss takes them, ``core.losses``; the sampler
    draws by their most probable class). ``class_counts`` feed the
    class-aware losses. ``model_cfg`` may carry ``classes`` (names stored in the model config).
    ``augment_policy``: a ``core.augment`` policy (its ``crop_size`` is the model input size);
    None: no augmentation, input = the whole face. ``on_epoch`` is called with (epoch, history
    row) after each epoch's checkpoint is written.

    Inside a torchrun worker (a process group initialised by ``core.distributed.init_from_env``)
    this is one rank of data-parallel training: the same call on every rank, ``batch_size`` the
    global batch; only rank 0 writes checkpoints and calls ``on_epoch``, and every rank returns
    the same result.
    """
    cfg = train_cfg if isinstance(train_cfg, TrainConfig) else TrainConfig.from_dict(train_cfg)
    augment_policy = dict(augment_policy) if augment_policy else None  # what is built is what is fingerprinted
    model_kwargs = dict(model_cfg)
    classes = list(model_kwargs.pop("classes", CLASSES))
    if cfg.loss == "ldam_drw" and "classifier" not in model_kwargs:
        # LDAM's scale s assumes cosine logits (Cao et al. 2019 use a normalised linear head).
        model_kwargs["classifier"] = "cosine"
        log.info("loss ldam_drw: using a cosine classifier head")
    data = (train_images, train_labels, val_images, val_labels)
    _check_faces("train", train_images, train_labels)
    _check_faces("val", val_images, val_labels)
    if np.asarray(train_labels).ndim == 2:
        _check_soft_targets(np.asarray(train_labels), int(model_kwargs.get("num_classes", len(classes))))
    world = current_world()
    if len(val_images) < world.size:
        raise ValueError(f"val: {len(val_images)} images for {world.size} training processes (need one each)")
    device = worker_device(cfg.device, world.local_rank) if world.distributed else resolve_device(cfg.device)
    with _deterministic_mode(cfg.deterministic, device):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        class_counts = np.asarray(class_counts)
        setup = _build(cfg, device, data, class_counts, model_kwargs, classes, augment_policy, world)
        checkpoint_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
        state = TrainingProgress()
        if checkpoint_dir is not None:
            if world.is_main:
                checkpoint_dir.mkdir(parents=True, exist_ok=True)
            resume_cfg = {k: v for k, v in cfg.to_dict().items() if k not in RESUME_NEUTRAL_FIELDS}
            setup.fingerprint = checkpoint.fingerprint(
                resume_cfg, model_kwargs, setup.config, augment_policy, class_counts.tolist(),
                np.asarray(train_images), as_targets(train_labels),
                np.asarray(val_images), np.asarray(val_labels, dtype=np.int64))
            state = _resume(setup, cfg, checkpoint_dir)
        for epoch in range(state.start_epoch, cfg.epochs):
            if state.stopped_early:
                break
            row = _run_epoch(setup, cfg, epoch, progress)
            state.history.append(row)
            # Only rank 0 writes; the others keep the same state in memory (same metrics, same choices).
            write_dir = checkpoint_dir if world.is_main else None
            _keep_if_best(setup, state, cfg, epoch, row, write_dir)
            if write_dir is not None:
                _save_checkpoint(setup, state, epoch, write_dir)
            if on_epoch is not None and world.is_main:
                on_epoch(epoch, dict(row))
            if state.stopped_early:
                log.info("early stopping: no %s improvement for %d epochs", cfg.select_metric,
                         cfg.early_stopping_patience)
        return _result(setup, state, cfg)


def _keep_if_best(setup: TrainingSetup, state: TrainingProgress, cfg: TrainConfig, epoch: int,
                  row: dict[str, float], checkpoint_dir: Path | None) -> None:
    """Keep this epoch's evaluated weights when its validation metric is the best so far (and
    write them as ``best.pt``); decide early stopping."""
    if state.best_state is None or row[f"val_{cfg.select_metric}"] > state.best_metrics[cfg.select_metric]:
        state.best_epoch = epoch
        state.best_metrics = {k[len("val_"):]: v for k, v in row.items() if k.startswith("val_")}
        state.best_state = checkpoint.cpu_state(setup.eval_model)
        if checkpoint_dir is not None:
            save_model(checkpoint_dir / "best.pt", setup.eval_model, setup.config)
    patience = cfg.early_stopping_patience or 0
    state.stopped_early = patience > 0 and epoch - state.best_epoch >= patience
    log.info(
        "epoch %d: train_loss %.4f val_loss %.4f val_acc %.4f val_macro_f1 %.4f (%.1f img/s)%s",
        epoch, row["train_loss"], row["val_loss"], row["val_accuracy"], row["val_macro_f1"], row["images_per_s"],
        " *" if state.best_epoch == epoch else "",
    )


def _result(setup: TrainingSetup, state: TrainingProgress, cfg: TrainConfig) -> TrainResult:
    """The best weights in a fresh, plain model (``weights_path`` is not re-read: every weight
    comes from the kept state), with the device description."""
    best_model = build_resnet34(**{k: v for k, v in setup.model_kwargs.items() if k != "weights_path"})
    best_model.load_state_dict(state.best_state)
    best_model = best_model.to(setup.device).eval()
    info = device_info(setup.device)
    info.update(autocast=precision_name(setup.autocast_dtype), amp=cfg.amp,
                channels_last=setup.channels_last, compile=cfg.compile, processes=setup.world.size)
    if setup.device.type == "cuda":
        info["peak_memory_mb"] = torch.cuda.max_memory_allocated(setup.device) / 2**20
    return TrainResult(
        model=best_model, config=setup.config, history=state.history, best_epoch=state.best_epoch,
        best_metrics=state.best_metrics, device_info=info, resumed_from_epoch=state.resumed_from,
        stopped_early=state.stopped_early, train_config=cfg.to_dict(),
    )
