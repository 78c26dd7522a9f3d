"""The FER classifier's training loop, in the shape of torchvision's classification reference.

``train_one_epoch`` runs the optimiser over one epoch of batches; ``evaluate`` scores a model on
the validation split (``core.inference.predict_logits`` and ``core.evaluation.metrics``, as the evaluation
stage does); ``train_classifier`` is the driver: build, resume, then per epoch train, validate,
keep the best, checkpoint (what it builds and how it resumes: ``core.training.setup``). Every
trick is a ``TrainConfig`` flag (``core.training.config``): ``amp`` (bf16 autocast),
``channels_last``, ``compile``, ``ema``, ``resume`` (with ``checkpoint_dir``), the loss, the
sampler, ``aux_weight``; mixup / cutmix are part of the augmentation policy.

Data path (no DataLoader, no per-image Python): the uint8 faces are moved to the device once;
each step indexes a batch there (a per-epoch ``randperm``, or ``multinomial`` over sampling
weights), converts it to float, augments it with ``core.augmentation.transforms.BatchAugment`` on the device,
optionally mixes it, normalises it and runs the model. The only host sync per epoch is reading
the summed loss.

Validation each epoch: centre crop to the input size, plain CE loss, accuracy, macro-F1 and
balanced accuracy. The best epoch by ``select_metric`` on the validation split is kept (the
EMA weights when ``ema`` is on). Epochs are 0-based everywhere (history, ``set_epoch``,
``best_epoch``, ``drw_epoch``).

Checkpoints (``checkpoint_dir``, see ``core.training.checkpoint``): ``last.pt`` after every epoch (model,
optimiser, scheduler, EMA, best weights so far, history, every RNG state), and ``best.pt`` as a
regular model file (``core.models.load_model`` reads it). ``resume=True`` continues from
``last.pt`` when it was written by the same configuration and data; in deterministic mode on
CPU a resumed run ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_pipeline.core.device import device_info, precision_name, resolve_device
from fer_pipeline.core.evaluation.metrics import classification_metrics
from fer_pipeline.core.inference import predict_logits
from fer_pipeline.core.models import build_resnet34, save_model, unwrap_model
from fer_pipeline.core.pixels import MEAN, STD
from fer_pipeline.core.training import checkpoint
from fer_pipeline.core.training.batches import epoch_batch_indices, prepare_train_batch
from fer_pipeline.core.training.config import TrainConfig, TrainResult
from fer_pipeline.core.training.distributed import (
    World,
    all_gather_rows,
    all_reduce_mean,
    current_world,
    rank_batch,
    rank_rows,
    worker_device,
)
from fer_pipeline.core.training.losses import FERLoss
from fer_pipeline.core.training.setup import (
    TrainingProgress,
    TrainingSetup,
    build_setup,
    check_data,
    deterministic_mode,
    model_arguments,
    resume_progress,
    run_fingerprint,
    save_last_checkpoint,
)

try:
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover - tqdm is optional on the GPU box
    tqdm = None

log = logging.getLogger(__name__)


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
    (``core.inference.predict_logits``, ``core.evaluation.metrics.classification_metrics``). In a process
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
    soft targets (FER+ vote distributions; every loss takes them, ``core.training.losses``; the sampler
    draws by their most probable class). ``class_counts`` feed the
    class-aware losses. ``model_cfg`` may carry ``classes`` (names stored in the model config).
    ``augment_policy``: a ``core.augmentation.transforms`` policy (its ``crop_size`` is the model input size);
    None: no augmentation, input = the whole face. ``on_epoch`` is called with (epoch, history
    row) after each epoch's checkpoint is written.

    Inside a torchrun worker (a process group initialised by ``core.training.distributed.init_from_env``)
    this is one rank of data-parallel training: the same call on every rank, ``batch_size`` the
    global batch; only rank 0 writes checkpoints and calls ``on_epoch``, and every rank returns
    the same result.
    """
    cfg = train_cfg if isinstance(train_cfg, TrainConfig) else TrainConfig.from_dict(train_cfg)
    augment_policy = dict(augment_policy) if augment_policy else None  # what is built is what is fingerprinted
    model_kwargs, classes = model_arguments(cfg, model_cfg)
    data = (train_images, train_labels, val_images, val_labels)
    world = current_world()
    check_data(data, int(model_kwargs.get("num_classes", len(classes))), world)
    device = worker_device(cfg.device, world.local_rank) if world.distributed else resolve_device(cfg.device)
    with deterministic_mode(cfg.deterministic, device):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        class_counts = np.asarray(class_counts)
        setup = build_setup(cfg, device, data, class_counts, model_kwargs, classes, augment_policy, world)
        checkpoint_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
        state = TrainingProgress()
        if checkpoint_dir is not None:
            if world.is_main:
                checkpoint_dir.mkdir(parents=True, exist_ok=True)
            setup.fingerprint = run_fingerprint(cfg, model_kwargs, setup, augment_policy, class_counts, data)
            state = resume_progress(setup, cfg, checkpoint_dir)
        for epoch in range(state.start_epoch, cfg.epochs):
            if state.stopped_early:
                break
            row = _run_epoch(setup, cfg, epoch, progress)
            state.history.append(row)
            # Only rank 0 writes; the others keep the same state in memory (same metrics, same choices).
            write_dir = checkpoint_dir if world.is_main else None
            _keep_if_best(setup, state, cfg, epoch, row, write_dir)
            if write_dir is not None:
                save_last_checkpoint(setup, state, epoch, write_dir)
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
