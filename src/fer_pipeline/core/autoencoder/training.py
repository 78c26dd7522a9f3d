"""The autoencoder stage's training: the class-weighted autoencoder on the train split, its per-class
reconstruction errors, and an unweighted twin to compare them with.

Underneath, the training loop (``fit_autoencoder``) keeps the whole uint8 training set on the
device and indexes batches there (no DataLoader, no host->device copies per step), so one epoch
over FER2013's 28,709 training faces is a few hundred small kernels on a GPU. Its objective is the
class-weighted reconstruction loss (``weighted_reconstruction_loss``), optionally plus the DeepSMOTE
penalty (Dablain et al., "DeepSMOTE: Fusing Deep Learning and SMOTE for Imbalanced Data", IEEE
TNNLS 2022). ``reconstruct`` and ``per_class_reconstruction_error`` score a trained model; its
figures (reconstructions, synthetic faces) are drawn by ``fer_pipeline.plots``. tqdm is optional.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from fer_pipeline.core.autoencoder.network import ConvAutoencoder, model_device, to_uint8
from fer_pipeline.core.class_balance.weights import class_weights as class_weight_vector
from fer_pipeline.core.classes import CLASSES, IMAGE_SIZE
from fer_pipeline.core.config import from_params
from fer_pipeline.core.device import (
    amp_mode,
    autocast_dtype_for,
    describe_precision,
    device_info,
    precision_name,
    resolve_device,
    synchronize,
)
from fer_pipeline.core.ingestion.dataset import Dataset, class_names, train_split
from fer_pipeline.core.pixels import as_tensor_images, to_float

log = logging.getLogger(__name__)

try:  # optional on the GPU box
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover
    tqdm = None

WEIGHTING_SCHEMES = ("none", "inverse_frequency", "effective_number")

#: Autoencoder-stage parameters that are not ``AutoencoderConfig`` fields.
AUTOENCODER_STAGE_KEYS = ("compare_unweighted", "oversampling")


# ---------------------------------------------------------------------------------------- loss
def per_sample_mse(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all pixels of each sample: (B,...) -> (B,), computed in float32."""
    return (recon.float() - target.float()).pow(2).flatten(1).mean(dim=1)


def weighted_reconstruction_loss(
    recon: torch.Tensor,
    target: torch.Tensor,
    labels: torch.Tensor,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class-weighted reconstruction loss.

    With l_i the MSE of sample i averaged over its pixels and w_i = class_weights[labels[i]]:

        loss = sum_i(w_i * l_i) / sum_i(w_i)

    i.e. a weighted mean over the batch, so the loss scale does not depend on the weights' scale
    or on the batch's class mix; a rare class with weight 3 counts like three common samples.
    ``class_weights=None`` gives the plain batch mean. Pick the weights with
    ``core.class_balance.class_weights(counts, scheme, beta)``.
    """
    return _weighted_mean(per_sample_mse(recon, target), labels, class_weights)


def _weighted_mean(losses: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None) -> torch.Tensor:
    if class_weights is None:
        return losses.mean()
    weights = class_weights.to(device=losses.device, dtype=losses.dtype)[labels]
    return (weights * losses).sum() / weights.sum()


# ------------------------------------------------------------------------------------ training
@dataclass
class AutoencoderConfig:
    """Training settings; the defaults are the pipeline's (conf/base/parameters_autoencoder.yml).
    Build from a params dict with ``AutoencoderConfig.from_dict`` (unknown keys are an error).

    weighting: class weights of the reconstruction loss (``none``, ``inverse_frequency``,
        ``effective_number`` with ``beta``), see ``core.class_balance``.
    deepsmote: add the DeepSMOTE penalty term (Dablain et al. 2022; ``_deepsmote_penalty``)
        times ``deepsmote_weight``: per step one class drawn uniformly, ``deepsmote_class_batch``
        of its images, latents permuted within the class, decoded, compared with the permuted
        images. Unweighted (the class draw is already uniform).
    device: ``auto`` = CUDA when present. amp: ``auto`` | ``on`` | ``off``, bf16 autocast of the
    training forward (``core.device.autocast_dtype_for``: auto = where the device runs bf16 natively).
    """

    latent_dim: int = 128
    base_channels: int = 32
    epochs: int = 30
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.0
    weighting: str = "effective_number"
    beta: float = 0.999
    deepsmote: bool = False
    deepsmote_weight: float = 0.5
    deepsmote_class_batch: int = 100
    seed: int = 0
    device: str = "auto"
    amp: bool | str = "auto"

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTING_SCHEMES:
            raise ValueError(f"weighting must be one of {WEIGHTING_SCHEMES}, got {self.weighting!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")
        self.amp = amp_mode(self.amp)

    @classmethod
    def from_dict(cls, params: Mapping[str, Any]) -> AutoencoderConfig:
        """Build from a params dict; unknown keys are an error (typos must not pass silently)."""
        return from_params(cls, params, "autoencoder")

    def to_dict(self) -> dict:
        return asdict(self)


def _loss_weights(labels: np.ndarray, num_classes: int, scheme: str, beta: float) -> torch.Tensor | None:
    """Per-class loss weights; classes absent from ``labels`` get weight 0 (they never occur)."""
    if scheme == "none":
        return None
    counts = np.bincount(labels, minlength=num_classes)
    present = counts > 0
    weights = np.zeros(num_classes, dtype=np.float64)
    weights[present] = class_weight_vector(counts[present], scheme, beta)
    return torch.as_tensor(weights, dtype=torch.float32)


def _deepsmote_penalty(
    model: ConvAutoencoder,
    images_u8: torch.Tensor,
    class_indices: list[torch.Tensor],
    class_batch: int,
    generator: torch.Generator,
    class_generator: torch.Generator,
) -> torch.Tensor:
    """DeepSMOTE penalty term, as in the authors' reference code.

    One class is drawn uniformly (so rare classes get as many of these steps as common ones),
    up to ``class_batch`` of its images are sampled, encoded without gradient, the latents and
    the images are reordered with the same cyclic shift, and the decoder output of the shifted
    latents is compared with the shifted images by MSE. Latents and images are shifted alike
    (decode(z[j]) vs x[j]), so, as in the reference code, the term is a reconstruction error of
    the decoder alone (encoder detached) on a class-balanced stream of images: it gives rare
    classes decoder updates that the class-mixed batches would not. The class sample comes from
    the whole training set, not from the current batch, which may hold no minority sample.
    """
    device = images_u8.device
    pick = int(torch.randint(len(class_indices), (1,), generator=class_generator))
    members = class_indices[pick]
    n = min(len(members), class_batch)
    chosen = members[torch.randperm(len(members), generator=generator, device=device)[:n]]
    x = to_float(images_u8[chosen])
    with torch.no_grad():
        z = model.encode(x)
    shift = torch.roll(torch.arange(n, device=device), -1)  # xcplus = [1, 2, ..., n-1, 0]
    return per_sample_mse(model.decode(z[shift]), x[shift]).mean()


def _train_epoch(
    model: ConvAutoencoder,
    optimizer: torch.optim.Optimizer,
    images_u8: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    loss_weights: torch.Tensor | None,
    class_indices: list[torch.Tensor],
    cfg: AutoencoderConfig,
    generators: tuple[torch.Generator, torch.Generator],
    bar=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One seeded pass over the faces; (sum of the batch objectives weighted by batch size, sum
    of the per-sample MSE per class), both still on the device."""
    generator, class_generator = generators
    device = images_u8.device
    autocast_dtype = autocast_dtype_for(cfg.amp, device)
    order = torch.randperm(len(labels), generator=generator, device=device)
    loss_sum = torch.zeros((), device=device)
    class_mse_sum = torch.zeros(num_classes, device=device)
    model.train()
    for start in range(0, len(labels), cfg.batch_size):
        batch = order[start : start + cfg.batch_size]
        x = to_float(images_u8[batch])
        y = labels[batch]
        with torch.autocast(device.type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
            recon, _ = model(x)
            sample_mse = per_sample_mse(recon, x)
            loss = _weighted_mean(sample_mse, y, loss_weights)
            if cfg.deepsmote:
                penalty = _deepsmote_penalty(
                    model, images_u8, class_indices, cfg.deepsmote_class_batch, generator, class_generator
                )
                loss = loss + cfg.deepsmote_weight * penalty
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(batch)
        class_mse_sum.index_add_(0, y, sample_mse.detach())
        if bar is not None:
            bar.update(1)
    return loss_sum, class_mse_sum


def fit_autoencoder(
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    cfg: AutoencoderConfig | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    progress: bool = True,
    classes: Sequence[str] = CLASSES,
) -> tuple[ConvAutoencoder, list[dict]]:
    """Train a ``ConvAutoencoder`` on exactly the images given (pass the train split only).

    The uint8 images (N,48,48) live on the device; each epoch is a seeded permutation indexed
    there. Returns the model (eval mode, on the training device) and one history dict per epoch:
    ``epoch, loss, seconds, images_per_s`` plus ``recon_mse_<class>`` for every class present
    (running mean over the epoch's training batches, unweighted). ``loss`` is the epoch mean of
    the optimised objective (weighted reconstruction + deepsmote term). ``on_epoch(epoch,
    metrics)`` is called after each epoch. On CPU the result is a deterministic function of
    ``cfg.seed``.
    """
    cfg = cfg or AutoencoderConfig()
    device = resolve_device(cfg.device)
    log.info("autoencoder precision: %s", describe_precision(cfg.amp, device))
    labels_np = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.int64)
    if labels_np.ndim != 1 or len(labels_np) == 0:
        raise ValueError("labels must be a non-empty 1-d array")
    num_classes = len(classes)
    if labels_np.min() < 0 or labels_np.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes})")
    images_u8 = as_tensor_images(images, device)
    if images_u8.shape[0] != len(labels_np) or tuple(images_u8.shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"images must be (N,{IMAGE_SIZE},{IMAGE_SIZE}) with N = len(labels)")
    labels_t = torch.as_tensor(labels_np, device=device)
    counts = np.bincount(labels_np, minlength=num_classes)
    present = np.flatnonzero(counts)
    loss_weights = _loss_weights(labels_np, num_classes, cfg.weighting, cfg.beta)
    if loss_weights is not None:
        loss_weights = loss_weights.to(device)
    class_indices = [torch.nonzero(labels_t == c).flatten() for c in present]

    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        model = ConvAutoencoder(cfg.latent_dim, cfg.base_channels)
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # host-side class draws for the DeepSMOTE term: no GPU sync per step
    generators = (torch.Generator(device=device).manual_seed(cfg.seed), torch.Generator().manual_seed(cfg.seed))
    n = len(labels_np)
    history: list[dict] = []
    bar = None
    if progress and tqdm is not None:
        bar = tqdm(total=cfg.epochs * math.ceil(n / cfg.batch_size), desc="autoencoder", unit="step", leave=False)
    for epoch in range(1, cfg.epochs + 1):
        synchronize(device)
        start = time.perf_counter()
        loss_sum, class_mse_sum = _train_epoch(model, optimizer, images_u8, labels_t, num_classes, loss_weights,
                                               class_indices, cfg, generators, bar)
        synchronize(device)
        seconds = time.perf_counter() - start
        class_mse = class_mse_sum.cpu().numpy() / np.maximum(counts, 1)
        metrics = {"epoch": epoch, "loss": float(loss_sum.item() / n), "seconds": seconds,
                   "images_per_s": n / seconds if seconds > 0 else float("inf")}
        metrics.update({f"recon_mse_{classes[c]}": float(class_mse[c]) for c in present})
        history.append(metrics)
        if bar is not None:
            bar.set_postfix(epoch=epoch, loss=f"{metrics['loss']:.5f}")
        if on_epoch is not None:
            on_epoch(epoch, dict(metrics))
    if bar is not None:
        bar.close()
    return model.eval(), history


# ---------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def reconstruct(
    model: ConvAutoencoder, images: np.ndarray, batch_size: int = 512, device: str | torch.device | None = None
) -> np.ndarray:
    """uint8 (N,48,48) -> reconstructed uint8 (N,48,48)."""
    device = resolve_device(device) if device is not None else model_device(model)
    model = model.to(device).eval()
    images_u8 = as_tensor_images(images, device)
    if len(images_u8) == 0:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    out = [model(to_float(images_u8[i : i + batch_size]))[0] for i in range(0, len(images_u8), batch_size)]
    return to_uint8(torch.cat(out))


@torch.no_grad()
def per_class_reconstruction_error(
    model: ConvAutoencoder,
    images: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str] = CLASSES,
    batch_size: int = 512,
    device: str | torch.device | None = None,
) -> list[dict]:
    """One row per class: ``{class, n, mse, mae}`` on [0,1] pixels (NaN errors when n = 0)."""
    device = resolve_device(device) if device is not None else model_device(model)
    model = model.to(device).eval()
    images_u8 = as_tensor_images(images, device)
    labels = np.asarray(labels, dtype=np.int64)
    sq_err, abs_err = [], []
    for i in range(0, len(images_u8), batch_size):
        x = to_float(images_u8[i : i + batch_size])
        diff = (model(x)[0].float() - x).flatten(1)
        sq_err.append(diff.pow(2).mean(1).cpu())
        abs_err.append(diff.abs().mean(1).cpu())
    sq = torch.cat(sq_err).numpy() if sq_err else np.zeros(0)
    ab = torch.cat(abs_err).numpy() if abs_err else np.zeros(0)
    rows = []
    for c, name in enumerate(classes):
        mask = labels == c
        n = int(mask.sum())
        rows.append(
            {
                "class": name,
                "n": n,
                "mse": float(sq[mask].mean()) if n else float("nan"),
                "mae": float(ab[mask].mean()) if n else float("nan"),
            }
        )
    return rows


# ------------------------------------------------------------------------------------- the stage
def autoencoder_config(params: Mapping[str, Any], **overrides: Any) -> AutoencoderConfig:
    """``AutoencoderConfig`` from the autoencoder stage's parameters: the stage's own keys
    (``AUTOENCODER_STAGE_KEYS``) are set aside, any other unknown key is an error with a hint."""
    fields = {k: v for k, v in params.items() if k not in AUTOENCODER_STAGE_KEYS}
    return AutoencoderConfig.from_dict({**fields, **overrides})


def autoencoder_epoch_logger(params: Mapping[str, Any]) -> Callable[[int, Mapping[str, Any]], None]:
    """An ``on_epoch`` for ``train_autoencoder`` that logs each epoch's loss and rate (for runs
    without Kedro, whose nodes show a progress bar instead)."""
    epochs = autoencoder_config(params).epochs

    def on_epoch(epoch: int, row: Mapping[str, Any]) -> None:
        log.info("autoencoder epoch %d/%d: loss %.5f (%.0f img/s)", epoch, epochs, row["loss"], row["images_per_s"])

    return on_epoch


@dataclass
class AutoencoderRun:
    """What ``train_autoencoder`` returns."""

    model: ConvAutoencoder
    config: AutoencoderConfig
    history: list[dict]
    #: the unweighted twin's history; None when no twin ran
    twin_history: list[dict] | None
    #: one row per class: class, n, mse_<weighting>, mae_<weighting> (+ mse_none, mae_none,
    #: mse_change_pct when the twin ran)
    errors: list[dict]
    #: peak CUDA memory of the main training (MiB); None off CUDA
    peak_memory_mb: float | None = None
    #: what it ran on (``core.device.device_info``)
    device_info: dict[str, Any] | None = None


def train_autoencoder(
    dataset: Dataset,
    params: Mapping[str, Any],
    twin: bool | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    progress: bool = False,
) -> AutoencoderRun:
    """Train on the train split only, then the per-class reconstruction errors on it. With
    ``twin`` (default ``params["compare_unweighted"]``) and a weighting other than none, an
    unweighted twin is trained too and its errors join the table for comparison."""
    classes = class_names(dataset)
    images, labels = train_split(dataset)
    cfg = autoencoder_config(params)
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model, history = fit_autoencoder(images, labels, cfg, on_epoch=on_epoch, progress=progress, classes=classes)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    errors = [
        {"class": row["class"], "n": row["n"], f"mse_{cfg.weighting}": row["mse"], f"mae_{cfg.weighting}": row["mae"]}
        for row in per_class_reconstruction_error(model, images, labels, classes, device=cfg.device)
    ]
    twin_history = None
    if (params.get("compare_unweighted") if twin is None else twin) and cfg.weighting != "none":
        twin_model, twin_history = fit_autoencoder(
            images, labels, autoencoder_config(params, weighting="none"), progress=progress, classes=classes
        )
        twin_errors = per_class_reconstruction_error(twin_model, images, labels, classes, device=cfg.device)
        del twin_model
        for row, twin_row in zip(errors, twin_errors):
            row["mse_none"], row["mae_none"] = twin_row["mse"], twin_row["mae"]
            with np.errstate(divide="ignore", invalid="ignore"):  # NaN / inf as pandas gives them
                ratio = np.float64(row[f"mse_{cfg.weighting}"]) / np.float64(twin_row["mse"])
            row["mse_change_pct"] = float(100.0 * (ratio - 1.0))
    ran_on = {**device_info(device), "autocast": precision_name(autocast_dtype_for(cfg.amp, device)), "amp": cfg.amp}
    return AutoencoderRun(model, cfg, history, twin_history, errors, peak, ran_on)
