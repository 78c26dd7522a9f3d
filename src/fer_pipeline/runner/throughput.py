"""Training-step throughput: the on-device fast path of ``core.training.loop`` vs a JPEG DataLoader.

Both paths train the same model (ResNet-34, same stem, SGD, ``amp``: bf16 autocast where native) on the same
device, one after the other in one process:

* fast:  the uint8 faces resident on the device; per step a batch is indexed there, augmented
  per sample by ``BatchAugment`` and normalised (``core.training.batches.prepare_train_batch``);
* naive: ``torch.utils.data.DataLoader`` over JPEG files: PIL decode + per-image torchvision v2
  transforms (``core.augmentation.transforms.build_per_image_transform``) in ``workers`` processes, batches
  copied to the device.

Images/s counts training images through forward + backward + optimiser step, after ``warmup``
untimed steps. ``benchmarks/bench_training.py`` prints the table; the runner records the ratio.
Needs only torch, torchvision, numpy and Pillow.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fer_pipeline.core.augmentation.transforms import BatchAugment, build_per_image_transform
from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.device import autocast_dtype_for, synchronize
from fer_pipeline.core.models import build_resnet34
from fer_pipeline.core.pixels import normalize
from fer_pipeline.core.training.batches import epoch_batch_indices, prepare_train_batch


@dataclass
class StepSettings:
    """What both paths share: the model, the batch, how many steps are timed."""

    stem: str = "small"
    batch_size: int = 128
    steps: int = 100
    warmup: int = 10
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    workers: int = 4  # DataLoader workers of the naive path
    amp: str = "auto"  # core.device.AMP_MODES, both paths


def write_random_jpegs(folder: Path, count: int, seed: int = 0) -> None:
    """``count`` random 48x48 grey JPEGs in folder/train/<class>/ (FER2013 layout)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(count):
        class_dir = folder / "train" / CLASSES[i % len(CLASSES)]
        class_dir.mkdir(parents=True, exist_ok=True)
        face = rng.integers(0, 256, (48, 48), dtype=np.uint8)
        Image.fromarray(face, mode="L").save(class_dir / f"Training_{i}.jpg", quality=90)


def list_faces(folder: Path, limit: int | None) -> tuple[list[Path], np.ndarray]:
    """JPEG paths and labels of train/<class>/*.jpg (or <class>/*.jpg), spread over all classes."""
    files = sorted((folder / "train").glob("*/*.jpg")) or sorted(folder.glob("*/*.jpg"))
    files = [f for f in files if f.parent.name in CLASSES]
    if not files:
        raise FileNotFoundError(f"no <class>/*.jpg files under {folder}")
    if limit:
        files = files[:: max(1, len(files) // limit)][:limit]
    return files, np.array([CLASSES.index(f.parent.name) for f in files], dtype=np.int64)


def read_grey(path: Path) -> np.ndarray:
    """A writable uint8 grey copy of an image file (Pillow)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.array(image.convert("L"), dtype=np.uint8)


class JpegFaces(torch.utils.data.Dataset):
    """The naive path: decode + augment one image per __getitem__."""

    def __init__(self, files: list[Path], labels: np.ndarray, policy: Mapping[str, Any]) -> None:
        self.files, self.labels = files, labels
        self.transform = build_per_image_transform(dict(policy), train=True)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(read_grey(self.files[index])), int(self.labels[index])


def _model_and_optimizer(settings: StepSettings, device: torch.device):
    torch.manual_seed(settings.seed)
    model = build_resnet34(stem=settings.stem).to(device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    return (torch.compile(model) if settings.compile else model), optimizer


def _step(model, optimizer, x, y, autocast_dtype, device) -> torch.Tensor:
    with torch.autocast(device.type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
        loss = F.cross_entropy(model(x).float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def fast_path(images: np.ndarray, labels: np.ndarray, settings: StepSettings, device: torch.device,
              policy: Mapping[str, Any]) -> tuple[float, float]:
    """(training images/s of the on-device path, seconds of its untimed warm-up steps: with
    ``compile`` they hold the compilation, with cuDNN autotuning its search)."""
    model, optimizer = _model_and_optimizer(settings, device)
    autocast_dtype = autocast_dtype_for(settings.amp, device)
    x_all = torch.from_numpy(images).to(device)
    y_all = torch.from_numpy(labels).to(device)
    augment = BatchAugment(dict(policy)).to(device)
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    total = settings.warmup + settings.steps
    per_pass = max(1, len(images) // settings.batch_size)
    batches = torch.cat([epoch_batch_indices(len(images), per_pass, settings.batch_size, generator, device)
                         for _ in range(-(-total // per_pass))])
    loss_sum = torch.zeros((), device=device)
    synchronize(device)
    start = warmup_start = time.perf_counter()
    for i in range(total):
        if i == settings.warmup:
            synchronize(device)
            start = time.perf_counter()
        x, y = prepare_train_batch(x_all, y_all, batches[i], augment, None, 1, settings.channels_last, generator)
        loss_sum += _step(model, optimizer, x, y, autocast_dtype, device)
    loss_sum.item()
    synchronize(device)
    return settings.steps * settings.batch_size / (time.perf_counter() - start), start - warmup_start


def naive_path(files: list[Path], labels: np.ndarray, settings: StepSettings, device: torch.device,
               policy: Mapping[str, Any]) -> float:
    """Training images/s of a DataLoader over the JPEG files."""
    model, optimizer = _model_and_optimizer(settings, device)
    autocast_dtype = autocast_dtype_for(settings.amp, device)
    loader = torch.utils.data.DataLoader(
        JpegFaces(files, labels, policy), batch_size=settings.batch_size, shuffle=True, drop_last=True,
        num_workers=settings.workers, pin_memory=device.type == "cuda", persistent_workers=settings.workers > 0,
    )
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    total, i = settings.warmup + settings.steps, 0
    loss_sum = torch.zeros((), device=device)
    start = time.perf_counter()
    while i < total:
        for x, y in loader:
            if i == settings.warmup:
                synchronize(device)
                start = time.perf_counter()
            x = normalize(x.to(device, non_blocking=True)).contiguous(memory_format=memory_format)
            loss_sum += _step(model, optimizer, x, y.to(device, non_blocking=True), autocast_dtype, device)
            i += 1
            if i == total:
                break
    loss_sum.item()
    synchronize(device)
    return settings.steps * settings.batch_size / (time.perf_counter() - start)


def naive_vs_fast(data_root: Path, settings: StepSettings, device: torch.device, policy: Mapping[str, Any],
                  num_images: int = 8192, smaller_batch_ok: bool = True, naive: bool = True) -> dict[str, Any]:
    """Both paths one after the other on the same JPEG files, model, batch size and device.
    Fewer files than the batch size: the batch shrinks to them, or ``ValueError`` when not
    ``smaller_batch_ok``. ``naive=False`` times the fast path only (``naive_images_per_s`` None)."""
    files, labels = list_faces(data_root, num_images)
    if len(files) < settings.batch_size:
        if not smaller_batch_ok:
            raise ValueError(f"{len(files)} images < batch size {settings.batch_size}")
        settings = dataclasses.replace(settings, batch_size=len(files))
    decode_start = time.perf_counter()
    images = np.stack([read_grey(f) for f in files])
    decode_seconds = time.perf_counter() - decode_start
    fast, warmup_seconds = fast_path(images, labels, settings, device, policy)
    naive_rate = naive_path(files, labels, settings, device, policy) if naive else None
    return {"fast_images_per_s": fast, "naive_images_per_s": naive_rate,
            "speedup": fast / naive_rate if naive_rate else None, "amp": settings.amp,
            "steps": settings.steps, "warmup_steps": settings.warmup, "batch_size": settings.batch_size,
            "images": len(files), "naive_workers": settings.workers, "stem": settings.stem,
            "channels_last": settings.channels_last, "compile": settings.compile,
            "fast_path_one_time_decode_s": decode_seconds, "fast_warmup_s": warmup_seconds,
            "note": "model step only (forward, backward, SGD): fer_pipeline.runner.throughput fast_path vs naive_path"}


def epochs_that_fit(seconds: float, epoch_seconds: float, wanted: int, runs: int = 1,
                    fixed_seconds: float = 0.0) -> int:
    """The most epochs, at most ``wanted`` and at least 1, such that ``runs`` trainings of
    ``epoch_seconds`` per epoch fit in ``seconds`` after ``fixed_seconds`` of other work.

    How a machine lent for a fixed time sizes a schedule before it starts: the cosine schedule
    is set by the epoch count, so a run cannot simply be cut short. At least 1 even when nothing
    fits (the caller's time limit then stops it, and what finished is kept)."""
    if epoch_seconds <= 0 or runs < 1 or wanted < 1:
        raise ValueError(f"epochs_that_fit: epoch_seconds {epoch_seconds} must be > 0, runs {runs} and "
                         f"wanted {wanted} >= 1")
    return max(1, min(wanted, int((seconds - fixed_seconds) // (runs * epoch_seconds))))


def default_workers() -> int:
    """DataLoader workers for the naive path: min(8, cores)."""
    return min(8, os.cpu_count() or 1)
