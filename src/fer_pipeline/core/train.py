"""One readable training loop for the FER classifier; every trick is a ``TrainConfig`` flag.

Data path (no DataLoader, no per-image Python): the uint8 faces are moved to the device once;
each step indexes a batch there (a per-epoch ``randperm``, or ``multinomial`` over sampling
weights), converts it to float, augments it with ``core.augment.BatchAugment`` on the device,
optionally mixes it (mixup / cutmix), normalises it and runs the model in channels_last under
bf16 autocast. The only host sync per epoch is reading the summed loss.

Validation each epoch: centre crop to the input size, plain CE loss, accuracy, macro-F1 and
balanced accuracy. The best epoch by ``select_metric`` on the validation split is kept (the
EMA weights when ``ema`` is on). Epochs are 0-based everywhere (history, ``set_epoch``,
``best_epoch``, ``drw_epoch``).

Checkpoints (``checkpoint_dir``): ``last.pt`` after every epoch (model, optimiser, scheduler,
EMA, best weights so far, history, every RNG state) written atomically, and ``best.pt`` as a
regular model file (``core.models.load_model`` reads it). ``resume=True`` continues from
``last.pt`` when it was written by the same configuration and data; in deterministic mode
on CPU a resumed run ends bit-identical to an uninterrupted one. Everything is loaded with
``torch.load(weights_only=True)``: RNG states are stored as tensors / plain Python values.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import logging
import math
import os
import platform
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .classes import CLASSES
from .data import MEAN, STD, normalize, resolve_device, to_float
from .losses import LOSS_NAMES, build_loss
from .models import build_resnet34, model_config, save_model

try:
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover - tqdm is optional on the GPU box
    tqdm = None

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

SELECT_METRICS = ("macro_f1", "accuracy", "balanced_accuracy")
SAMPLERS = ("shuffle", "class_balanced", "sqrt")
CHECKPOINT_VERSION = 1

#: TrainConfig fields that do not change the trained weights: a checkpoint written under
#: other values of these can still be resumed.
_RESUME_NEUTRAL_FIELDS = ("checkpoint_dir", "resume", "device", "eval_batch_size", "compile")


@dataclass
class TrainConfig:
    """Training hyper-parameters. Build from a params dict with ``TrainConfig.from_dict``."""

    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    decay_norm_and_bias: bool = False  # False: no weight decay on BatchNorm / bias parameters
    schedule: str = "cosine"  # cosine (linear warmup + cosine to 0) | onecycle
    warmup_epochs: float = 1.0  # onecycle: its rise fraction = warmup_epochs / epochs (0 -> 0.3)
    loss: str = "ce"  # see core.losses.LOSS_NAMES
    label_smoothing: float = 0.0
    weighting: str = "effective_number"  # class weights for weighted_ce
    beta: float = 0.999  # effective-number beta (cb_focal, weighted_ce, DRW)
    gamma: float = 2.0  # focal
    ldam_max_margin: float = 0.5
    ldam_scale: float = 30.0
    drw_epoch: int | None = None  # None: 0.8 * epochs (Cao et al.: 160 of 200)
    tau: float = 1.0  # logit adjustment
    amp: bool | str = True  # bf16 autocast on CUDA; "force" also on CPU
    channels_last: bool = True  # CUDA only (on CPU it slows small convs / BatchNorm down)
    compile: bool = False
    ema: bool = False
    ema_decay: float = 0.999
    sampler: str = "shuffle"  # shuffle | class_balanced | sqrt
    select_metric: str = "macro_f1"  # macro_f1 | accuracy | balanced_accuracy
    early_stopping_patience: int | None = None  # None / 0: off
    seed: int = 42
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
        if self.amp not in (True, False, "force"):
            raise ValueError(f"TrainConfig.amp={self.amp!r}: use true, false or 'force'")
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
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in params if k not in known]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(str(key), known, n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(f"unknown training parameter(s): {', '.join(hints)}. Known: {', '.join(known)}")
        return cls(**dict(params))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """Outcome of ``train_classifier``; ``model`` holds the best weights, in eval mode."""

    model: nn.Module
    config: dict[str, Any]  # model config for core.models.save_model
    history: list[dict[str, float]]
    best_epoch: int
    best_metrics: dict[str, float]
    device_info: dict[str, Any]
    resumed_from_epoch: int | None = None  # epochs already done when resumed, else None
    stopped_early: bool = False
    train_config: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Metrics and evaluation
# --------------------------------------------------------------------------------------------


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict[str, float]:
    """accuracy, macro-F1 and balanced accuracy with scikit-learn's conventions.

    One NumPy implementation (sklearn may be missing on the GPU box; tests compare with it):
    macro-F1 averages over the classes present in y_true or y_pred, balanced accuracy over the
    classes present in y_true.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    confusion = np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2).reshape(num_classes, num_classes)
    true_pos = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1).astype(np.float64)
    predicted = confusion.sum(axis=0).astype(np.float64)
    present = (support + predicted) > 0
    denom = support + predicted
    f1 = np.divide(2 * true_pos, denom, out=np.zeros(num_classes), where=denom > 0)
    recall = np.divide(true_pos, support, out=np.zeros(num_classes), where=support > 0)
    return {
        "accuracy": float(true_pos.sum() / max(1, confusion.sum())),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "balanced_accuracy": float(recall[support > 0].mean()) if (support > 0).any() else 0.0,
    }


def _model_inputs(x: torch.Tensor, in_channels: int, channels_last: bool) -> torch.Tensor:
    """Normalised (B,1,H,W) -> what the model takes (3 channels repeated, memory format)."""
    if in_channels == 3:
        x = x.expand(-1, 3, -1, -1)
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    input_size: int,
    in_channels: int = 1,
    batch_size: int = 512,
    channels_last: bool = False,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Centre-crop evaluation of uint8 faces (N,H,W) already on the model's device.

    Returns loss (plain CE), accuracy, macro_f1, balanced_accuracy.
    """
    from torchvision.transforms.v2 import functional as TF

    model.eval()
    device = images.device
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    predictions = []
    for start in range(0, images.shape[0], batch_size):
        x = to_float(images[start : start + batch_size])
        if x.shape[-1] != input_size:
            x = TF.center_crop(x, [input_size, input_size])
        x = _model_inputs(normalize(x), in_channels, channels_last)
        y = labels[start : start + batch_size]
        with torch.autocast(device.type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
            logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        predictions.append(logits.argmax(dim=1))
    y_pred = torch.cat(predictions).cpu().numpy()
    num_classes = int(logits.shape[1])
    metrics = classification_metrics(labels.cpu().numpy(), y_pred, num_classes)
    return {"loss": float(loss_sum.item() / images.shape[0]), **metrics}


# --------------------------------------------------------------------------------------------
# Building blocks (also used by benchmarks/bench_training.py)
# --------------------------------------------------------------------------------------------


def epoch_batch_indices(
    num_samples: int,
    num_batches: int,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    sample_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """(num_batches, batch_size) sample indices for one epoch, drawn on ``device``.

    Without weights: concatenated random permutations (each sample once per pass). With
    weights: draws with replacement in proportion to them.
    """
    total = num_batches * batch_size
    if sample_weights is not None:
        flat = torch.multinomial(sample_weights, total, replacement=True, generator=generator)
    else:
        passes = math.ceil(total / num_samples)
        flat = torch.cat([torch.randperm(num_samples, generator=generator, device=device) for _ in range(passes)])
    return flat[:total].view(num_batches, batch_size)


def prepare_train_batch(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_indices: torch.Tensor,
    augment: nn.Module | None,
    mix: Callable | None,
    in_channels: int = 1,
    channels_last: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index uint8 faces on the device -> augmented, normalised model input and targets.

    ``augment``: a ``core.augment.BatchAugment`` (random parameters from ``generator``);
    ``mix``: ``core.augment.build_mixup_cutmix`` output (soft targets; torch's global RNG).
    """
    x = to_float(images[batch_indices])
    y = labels[batch_indices]
    if augment is not None:
        x = augment(x, generator=generator)
    if mix is not None:
        x, y = mix(x, y)
    return _model_inputs(normalize(x), in_channels, channels_last), y


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


def autocast_dtype_for(amp: bool | str, device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA when amp is on; on CPU only when amp == "force"; None = full precision."""
    if amp == "force" or (amp and device.type == "cuda"):
        return torch.bfloat16
    return None


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    else:
        info["name"] = platform.processor() or platform.machine()
        info["threads"] = torch.get_num_threads()
    return info


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state(legacy=False)
    np_state["state"]["key"] = torch.from_numpy(np_state["state"]["key"].astype(np.int64))
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np_state,
        "python": random.getstate(),
        "sampler": generator.get_state(),
    }


def _set_rng_state(state: Mapping[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = copy.deepcopy(state["numpy"])
    np_state["state"]["key"] = np_state["state"]["key"].numpy().astype(np.uint32)
    np.random.set_state(np_state)
    python_state = state["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    generator.set_state(state["sampler"])


def _fingerprint(*parts: Any) -> str:
    """Hash of the configuration and the data: a checkpoint is resumed only when it matches."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(str((part.dtype, part.shape)).encode())
            digest.update(np.ascontiguousarray(part).data)
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _atomic_save(payload: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


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

    ``train_images`` / ``val_images``: uint8 (N,48,48); labels int64. ``class_counts`` feed the
    class-aware losses. ``augment_policy``: a ``core.augment`` policy (its ``crop_size`` is the
    model input size); None: no augmentation, input = the whole face. ``on_epoch`` is called
    with (epoch, history row) after each epoch's checkpoint is written.
    """
    cfg = train_cfg if isinstance(train_cfg, TrainConfig) else TrainConfig.from_dict(train_cfg)
    model_kwargs = dict(model_cfg)
    classes = list(model_kwargs.pop("classes", CLASSES))
    if cfg.loss == "ldam_drw" and "classifier" not in model_kwargs:
        # LDAM's scale s assumes cosine logits (Cao et al. 2019 use a normalised linear head).
        model_kwargs["classifier"] = "cosine"
        log.info("loss ldam_drw: using a cosine classifier head")
    augment_policy = dict(augment_policy) if augment_policy else None
    num_classes = int(model_kwargs.get("num_classes", len(CLASSES)))
    in_channels = int(model_kwargs.get("in_channels", 1))
    for name, images, labels in (("train", train_images, train_labels), ("val", val_images, val_labels)):
        if images.dtype != np.uint8 or images.ndim != 3:
            raise ValueError(f"{name}_images must be uint8 (N,H,W), got {images.dtype} {images.shape}")
        if len(images) != len(labels) or len(images) == 0:
            raise ValueError(f"{name}: {len(images)} images, {len(labels)} labels (need a matching non-empty set)")

    device = resolve_device(cfg.device)
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_benchmark = torch.backends.cudnn.benchmark
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # On CUDA a few ops (e.g. bilinear upsampling backward) have no deterministic kernel:
        # warn instead of failing there. On CPU everything used here is deterministic.
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    torch.backends.cudnn.benchmark = not cfg.deterministic
    try:
        return _train(
            cfg, device, train_images, train_labels, val_images, val_labels, np.asarray(class_counts),
            model_kwargs, classes, num_classes, in_channels, augment_policy, on_epoch, progress,
        )
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)
        torch.backends.cudnn.benchmark = previous_benchmark


def _train(
    cfg: TrainConfig,
    device: torch.device,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    class_counts: np.ndarray,
    model_kwargs: dict[str, Any],
    classes: list[str],
    num_classes: int,
    in_channels: int,
    augment_policy: Mapping[str, Any] | None,
    on_epoch: Callable | None,
    progress: bool,
) -> TrainResult:
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator(device=device)
    generator.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    augment, mix, sample_weights = None, None, None
    input_size = int(train_images.shape[-1])
    if augment_policy is not None:
        from .augment import BatchAugment, build_mixup_cutmix

        augment = BatchAugment(augment_policy).to(device)
        input_size = augment.crop_size
        mix = build_mixup_cutmix(augment_policy, num_classes)
    if cfg.sampler != "shuffle":
        from .augment import sampling_weights

        weights = sampling_weights(np.asarray(train_labels), cfg.sampler, num_classes)
        if weights is not None:
            sample_weights = torch.as_tensor(np.asarray(weights), dtype=torch.float64, device=device)

    # ---- model, loss, optimiser -------------------------------------------------------------
    model = build_resnet34(**model_kwargs).to(device)
    channels_last = cfg.channels_last and device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    config = model_config(
        arch=model_kwargs.get("arch", "resnet34"),
        stem=model_kwargs.get("stem", "small"),
        in_channels=in_channels,
        num_classes=num_classes,
        classes=classes,
        input_size=input_size,
        mean=MEAN,
        std=STD,
        aux_reconstruction=bool(model_kwargs.get("aux_reconstruction", False)),
        dropout=float(model_kwargs.get("dropout", 0.0)),
        classifier=model_kwargs.get("classifier", "linear"),
    )
    use_aux = cfg.aux_weight > 0
    if use_aux and not model.has_aux:
        raise ValueError("aux_weight > 0 needs model_cfg aux_reconstruction=True")
    if model.has_aux and not use_aux:
        log.warning("model has a reconstruction head but aux_weight is 0: the head is not trained")
    drw_epoch = cfg.drw_epoch if cfg.drw_epoch is not None else int(0.8 * cfg.epochs)
    criterion = build_loss(
        cfg.loss, class_counts, label_smoothing=cfg.label_smoothing, weighting=cfg.weighting, beta=cfg.beta,
        gamma=cfg.gamma, ldam_max_margin=cfg.ldam_max_margin, ldam_scale=cfg.ldam_scale, drw_epoch=drw_epoch,
        tau=cfg.tau,
    ).to(device)

    batch_size = min(cfg.batch_size, len(train_images))
    steps_per_epoch = cfg.steps_per_epoch or max(1, len(train_images) // batch_size)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch)
    ema = None
    if cfg.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    train_model = torch.compile(model) if cfg.compile else model
    eval_model = ema.module if ema is not None else model  # the weights that are validated and kept
    autocast_dtype = autocast_dtype_for(cfg.amp, device)
    autocast = torch.autocast(device.type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None)

    # ---- data resident on the device ---------------------------------------------------------
    x_train = torch.from_numpy(np.ascontiguousarray(train_images)).to(device)
    y_train = torch.from_numpy(np.asarray(train_labels, dtype=np.int64)).to(device)
    x_val = torch.from_numpy(np.ascontiguousarray(val_images)).to(device)
    y_val = torch.from_numpy(np.asarray(val_labels, dtype=np.int64)).to(device)

    # ---- state, possibly resumed ----------------------------------------------------------------
    history: list[dict[str, float]] = []
    best_epoch, best_metrics, best_state = -1, {}, None
    start_epoch, resumed_from, stopped_early = 0, None, False
    checkpoint_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
    fingerprint = None
    if checkpoint_dir is not None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        resume_cfg = {k: v for k, v in cfg.to_dict().items() if k not in _RESUME_NEUTRAL_FIELDS}
        fingerprint = _fingerprint(
            CHECKPOINT_VERSION, resume_cfg, model_kwargs, config, augment_policy, class_counts.tolist(),
            np.asarray(train_images), np.asarray(train_labels, dtype=np.int64),
            np.asarray(val_images), np.asarray(val_labels, dtype=np.int64),
        )
        last_path = checkpoint_dir / "last.pt"
        if cfg.resume and last_path.exists():
            state = torch.load(last_path, map_location="cpu", weights_only=True)
            if state.get("fingerprint") != fingerprint:
                log.warning("%s was written by another configuration or dataset: starting from scratch", last_path)
            else:
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
                if ema is not None:
                    ema.load_state_dict(state["ema"])
                history = list(state["history"])
                best_epoch, best_metrics = state["best_epoch"], dict(state["best_metrics"])
                best_state = state["best_state"]
                if best_state is None:  # the checkpointed epoch was the best one
                    best_state = _cpu_state(eval_model)
                start_epoch = resumed_from = int(state["epoch"]) + 1
                stopped_early = bool(state["stopped_early"])
                _set_rng_state(state["rng"], generator)
                log.info("resumed from %s after epoch %d", last_path, state["epoch"])

    # ---- epochs -----------------------------------------------------------------------------------
    patience = cfg.early_stopping_patience or 0
    for epoch in range(start_epoch, cfg.epochs):
        if stopped_early:
            break
        epoch_start = time.perf_counter()
        criterion.set_epoch(epoch)
        model.train()
        indices = epoch_batch_indices(len(x_train), steps_per_epoch, batch_size, generator, device, sample_weights)
        loss_sum = torch.zeros((), device=device)
        recon_sum = torch.zeros((), device=device)
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{cfg.epochs - 1}", leave=False,
                   disable=not progress) if tqdm is not None else None
        for step in range(steps_per_epoch):
            x, y = prepare_train_batch(
                x_train, y_train, indices[step], augment, mix, in_channels, channels_last, generator
            )
            with autocast:
                if use_aux:
                    logits, reconstruction = train_model(x, with_aux=True)
                    recon_loss = F.mse_loss(reconstruction.float(), x.float())
                    loss = criterion(logits.float(), y) + cfg.aux_weight * recon_loss
                    recon_sum += recon_loss.detach()
                else:
                    loss = criterion(train_model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            loss_sum += loss.detach()
            if bar is not None:
                bar.update()
        train_loss = float(loss_sum.item()) / steps_per_epoch  # the epoch's one host sync
        train_seconds = time.perf_counter() - epoch_start

        val = evaluate_classifier(eval_model, x_val, y_val, input_size, in_channels, cfg.eval_batch_size,
                                  channels_last, autocast_dtype)
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
            "val_macro_f1": val["macro_f1"],
            "val_balanced_accuracy": val["balanced_accuracy"],
            "lr": float(lr),
            "epoch_seconds": time.perf_counter() - epoch_start,
            "images_per_s": steps_per_epoch * batch_size / train_seconds,
        }
        if use_aux:
            row["train_recon_loss"] = float(recon_sum.item()) / steps_per_epoch
        history.append(row)
        if bar is not None:
            bar.close()

        if best_state is None or row[f"val_{cfg.select_metric}"] > best_metrics[cfg.select_metric]:
            best_epoch = epoch
            best_metrics = {k[len("val_"):]: v for k, v in row.items() if k.startswith("val_")}
            best_state = _cpu_state(eval_model)
            if checkpoint_dir is not None:
                save_model(checkpoint_dir / "best.pt", eval_model, config)
        stopped_early = patience > 0 and epoch - best_epoch >= patience
        log.info(
            "epoch %d: train_loss %.4f val_loss %.4f val_acc %.4f val_macro_f1 %.4f (%.1f img/s)%s",
            epoch, train_loss, row["val_loss"], row["val_accuracy"], row["val_macro_f1"], row["images_per_s"],
            " *" if best_epoch == epoch else "",
        )
        if checkpoint_dir is not None:
            _atomic_save(
                {
                    "version": CHECKPOINT_VERSION,
                    "fingerprint": fingerprint,
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "ema": ema.state_dict() if ema is not None else None,
                    "history": history,
                    "best_epoch": best_epoch,
                    "best_metrics": best_metrics,
                    # the evaluated weights of this epoch are already stored when it is the best
                    "best_state": None if best_epoch == epoch else best_state,
                    "stopped_early": stopped_early,
                    "rng": _rng_state(generator),
                    "model_config": config,
                },
                checkpoint_dir / "last.pt",
            )
        if on_epoch is not None:
            on_epoch(epoch, dict(row))
        if stopped_early:
            log.info("early stopping: no %s improvement for %d epochs", cfg.select_metric, patience)

    # ---- best weights into a fresh, plain model ------------------------------------------------
    # (weights_path is not re-read: every weight comes from best_state)
    best_model = build_resnet34(**{k: v for k, v in model_kwargs.items() if k != "weights_path"})
    best_model.load_state_dict(best_state)
    best_model = best_model.to(device).eval()
    info = device_info(device)
    info.update(autocast=str(autocast_dtype).replace("torch.", "") if autocast_dtype else "off",
                channels_last=channels_last, compile=cfg.compile)
    if device.type == "cuda":
        info["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return TrainResult(
        model=best_model,
        config=config,
        history=history,
        best_epoch=best_epoch,
        best_metrics=best_metrics,
        device_info=info,
        resumed_from_epoch=resumed_from,
        stopped_early=stopped_early,
        train_config=cfg.to_dict(),
    )


def plot_training_curves(history: list[Mapping[str, float]]) -> Figure:
    """Two panels: train / val loss, and the validation metrics, per epoch."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, metric_ax = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    loss_ax.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train")
    loss_ax.plot(epochs, [row["val_loss"] for row in history], marker="o", label="val (CE)")
    loss_ax.set(title="Loss", xlabel="epoch", ylabel="loss")
    loss_ax.legend()
    for key, label in (("val_accuracy", "accuracy"), ("val_macro_f1", "macro-F1"),
                       ("val_balanced_accuracy", "balanced accuracy")):
        metric_ax.plot(epochs, [row[key] for row in history], marker="o", label=label)
    if history:
        best = max(range(len(history)), key=lambda i: history[i]["val_macro_f1"])
        metric_ax.axvline(epochs[best], color="grey", linestyle=":", label="best macro-F1")
    metric_ax.set(title="Validation", xlabel="epoch", ylim=(0, 1))
    metric_ax.legend()
    return figure
