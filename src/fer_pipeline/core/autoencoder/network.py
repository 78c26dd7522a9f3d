"""Convolutional autoencoder for 48x48 faces and latent-space SMOTE oversampling (DeepSMOTE-style).

Plain PyTorch. The training loop keeps the whole uint8 training set on the device and indexes
batches there (no DataLoader, no host->device copies per step), so one epoch over FER2013's
28,709 training faces is a few hundred small kernels on a GPU.

Oversampling (``latent_smote``) follows Dablain et al., "DeepSMOTE: Fusing Deep Learning and
SMOTE for Imbalanced Data" (IEEE TNNLS 2022): encode the images of a minority class, interpolate
between a sample and one of its k nearest same-class neighbours in latent space, decode.

Only torch / numpy / stdlib at module level (the GPU box may lack the rest); tqdm is optional.
Its figures (reconstructions, synthetic faces) are drawn by ``fer_pipeline.plots``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_pipeline.core.class_balance.weights import class_weights as class_weight_vector
from fer_pipeline.core.classes import CLASSES, IMAGE_SIZE
from fer_pipeline.core.config import from_params
from fer_pipeline.core.device import amp_mode, autocast_dtype_for, describe_precision, resolve_device, synchronize
from fer_pipeline.core.pixels import as_tensor_images, to_float

log = logging.getLogger(__name__)

try:  # optional on the GPU box
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover
    tqdm = None

WEIGHTING_SCHEMES = ("none", "inverse_frequency", "effective_number")


# --------------------------------------------------------------------------------------- model
def _conv_block(in_ch: int, out_ch: int, kernel: int, stride: int, padding: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.LeakyReLU(0.2, inplace=True),
    )


def _deconv_block(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=False),  # doubles H and W
        nn.BatchNorm2d(out_ch),
        nn.LeakyReLU(0.2, inplace=True),
    )


class ConvAutoencoder(nn.Module):
    """(B,1,48,48) floats in [0,1] -> latent (B, latent_dim) -> (B,1,48,48) in [0,1] (sigmoid).

    Encoder: stride-2 convolutions 48 -> 24 -> 12 -> 6 with c, 2c, 4c channels (c =
    base_channels), then a linear layer to the latent vector. The decoder mirrors it with
    stride-2 transposed convolutions (last one to c/2 channels) and a 3x3 output convolution.
    """

    def __init__(self, latent_dim: int = 128, base_channels: int = 32) -> None:
        super().__init__()
        if latent_dim < 1 or base_channels < 1:
            raise ValueError("latent_dim and base_channels must be positive")
        self.latent_dim = int(latent_dim)
        self.base_channels = int(base_channels)
        c = self.base_channels
        self._bottleneck_shape = (4 * c, IMAGE_SIZE // 8, IMAGE_SIZE // 8)
        bottleneck = 4 * c * (IMAGE_SIZE // 8) ** 2
        # strided convolutions; at full resolution only the thin output layers: ~25 MMAC per face
        self.encoder = nn.Sequential(
            _conv_block(1, c, 4, 2, 1),  # 24
            _conv_block(c, 2 * c, 4, 2, 1),  # 12
            _conv_block(2 * c, 4 * c, 4, 2, 1),  # 6
            nn.Flatten(),
            nn.Linear(bottleneck, self.latent_dim),
        )
        self.decoder_input = nn.Sequential(nn.Linear(self.latent_dim, bottleneck), nn.LeakyReLU(0.2, inplace=True))
        self.decoder = nn.Sequential(
            _deconv_block(4 * c, 2 * c),  # 12
            _deconv_block(2 * c, c),  # 24
            _deconv_block(c, max(c // 2, 1)),  # 48
            nn.Conv2d(max(c // 2, 1), 1, 3, 1, 1),
            nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B,1,48,48) -> (B, latent_dim)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B,1,48,48) in [0,1]."""
        return self.decoder(self.decoder_input(z).view(-1, *self._bottleneck_shape))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return self.decode(z), z

    def config(self) -> dict:
        """Constructor arguments as plain Python types (stored next to the weights)."""
        return {"latent_dim": self.latent_dim, "base_channels": self.base_channels}


def autoencoder_bundle(model: ConvAutoencoder) -> dict[str, Any]:
    """``{"config", "state_dict"}`` with CPU tensors: what an autoencoder file holds."""
    return {"config": model.config(),
            "state_dict": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}}


def save_autoencoder(path: str | Path, model: ConvAutoencoder) -> None:
    """``torch.save(autoencoder_bundle(model))``, loadable with weights_only=True."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(autoencoder_bundle(model), path)


def load_autoencoder(path: str | Path, map_location: str | torch.device = "cpu") -> ConvAutoencoder:
    """Inverse of ``save_autoencoder``; the model comes back in eval mode."""
    payload = torch.load(path, map_location=map_location, weights_only=True)
    model = ConvAutoencoder(**payload["config"])
    model.load_state_dict(payload["state_dict"])
    return model.to(map_location).eval()


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


def train_autoencoder(
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
def _encode_batches(model: ConvAutoencoder, images_u8: torch.Tensor, batch_size: int) -> torch.Tensor:
    chunks = [model.encode(to_float(images_u8[i : i + batch_size])) for i in range(0, len(images_u8), batch_size)]
    return torch.cat(chunks)


@torch.no_grad()
def _decode_batches(model: ConvAutoencoder, z: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model.decode(z[i : i + batch_size]) for i in range(0, len(z), batch_size)])


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B,1,H,W) floats in [0,1] -> uint8 (B,H,W)."""
    return x.float().mul(255.0).round_().clamp_(0, 255).to(torch.uint8).squeeze(1).cpu().numpy()


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def reconstruct(
    model: ConvAutoencoder, images: np.ndarray, batch_size: int = 512, device: str | torch.device | None = None
) -> np.ndarray:
    """uint8 (N,48,48) -> reconstructed uint8 (N,48,48)."""
    device = resolve_device(device) if device is not None else _model_device(model)
    model = model.to(device).eval()
    images_u8 = as_tensor_images(images, device)
    if len(images_u8) == 0:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    out = [model(to_float(images_u8[i : i + batch_size]))[0] for i in range(0, len(images_u8), batch_size)]
    return _to_uint8(torch.cat(out))


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
    device = resolve_device(device) if device is not None else _model_device(model)
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


# -------------------------------------------------------------------------------- oversampling
def oversampling_targets(counts: Sequence[int] | np.ndarray, fraction_of_largest: float = 0.5) -> np.ndarray:
    """Target count per class: max(n_c, ceil(fraction * largest)); larger classes are untouched."""
    counts = np.asarray(counts, dtype=np.int64)
    if not 0.0 <= fraction_of_largest <= 1.0:
        raise ValueError(f"fraction_of_largest must be in [0, 1], got {fraction_of_largest}")
    floor = int(math.ceil(fraction_of_largest * counts.max())) if counts.size else 0
    return np.maximum(counts, floor)


def _nearest_neighbours(z: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """Indices (n, k) of each row's k nearest other rows (Euclidean), computed in row chunks."""
    out = []
    for start in range(0, len(z), chunk):
        dist = torch.cdist(z[start : start + chunk], z)
        rows = torch.arange(start, min(start + chunk, len(z)), device=z.device)
        dist[rows - start, rows] = float("inf")  # a sample is not its own neighbour
        out.append(dist.topk(k, dim=1, largest=False).indices)
    return torch.cat(out)


@torch.no_grad()
def latent_smote(
    model: ConvAutoencoder,
    images: np.ndarray,
    labels: np.ndarray,
    targets: Sequence[int] | np.ndarray,
    k: int = 5,
    seed: int = 0,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    single_sample_jitter: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """SMOTE in the autoencoder's latent space: ``targets[c] - n_c`` new faces per short class.

    For each class c with n_c < targets[c]: encode its images, then per new sample draw a base
    sample a, one of its k nearest same-class neighbours b (k = min(k, n_c - 1), torch.cdist),
    u ~ U(0,1), and decode z = z_a + u * (z_b - z_a). A class with a single image has no
    neighbour: its new samples decode z_a + noise, noise ~ N(0, (single_sample_jitter *
    std(z_a))^2) per latent dimension. A class with no image but a positive target raises.

    Only class c's images feed class c's samples, and each class draws from its own generator
    seeded by (seed, c), so the output is reproducible and independent of the other classes.
    Returns uint8 (M,48,48) and int64 (M,) labels, grouped by class in ascending order.
    """
    device = resolve_device(device) if device is not None else _model_device(model)
    model = model.to(device).eval()
    labels = np.asarray(labels, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    counts = np.bincount(labels, minlength=len(targets))
    if len(counts) > len(targets):
        raise ValueError("labels contain classes beyond len(targets)")
    if k < 1:
        raise ValueError("k must be >= 1")
    new_images, new_labels = [], []
    for c in range(len(targets)):
        needed = int(targets[c] - counts[c])
        if needed <= 0:
            continue
        n = int(counts[c])
        if n == 0:
            raise ValueError(f"class {c} has no images to oversample from (target {targets[c]})")
        class_images = as_tensor_images(np.ascontiguousarray(images[labels == c]), device)
        z = _encode_batches(model, class_images, batch_size).float()
        generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + c)  # CPU: same draws on any device
        base = torch.randint(n, (needed,), generator=generator)
        if n == 1:
            noise = torch.randn(needed, z.shape[1], generator=generator).to(device)
            new_z = z[base.to(device)] + single_sample_jitter * z.std() * noise
        else:
            k_eff = min(k, n - 1)
            neighbours = _nearest_neighbours(z, k_eff)
            pick = torch.randint(k_eff, (needed,), generator=generator)
            u = torch.rand(needed, 1, generator=generator).to(device)
            base, pick = base.to(device), pick.to(device)
            z_a = z[base]
            z_b = z[neighbours[base, pick]]
            new_z = z_a + u * (z_b - z_a)
        new_images.append(_to_uint8(_decode_batches(model, new_z, batch_size)))
        new_labels.append(np.full(needed, c, dtype=np.int64))
    if not new_images:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8), np.zeros(0, dtype=np.int64)
    return np.concatenate(new_images), np.concatenate(new_labels)
