"""Throughput of batched on-device augmentation vs a per-image torchvision DataLoader.

Same policy, same uint8 48x48 faces, measured side by side in one run:

* ``BatchAugment`` on whole batches already on the device (per-sample random parameters);
* ``torch.utils.data.DataLoader`` applying ``build_per_image_transform`` to each image
  (num_workers 0 and 2), then the batch moved to the device.

Usage::

    python benchmarks/bench_augmentation.py                        # random faces, CPU (+CUDA)
    python benchmarks/bench_augmentation.py --data /path/to/fer2013   # train/<class>/*.jpg
    python benchmarks/bench_augmentation.py --data data/fer_dataset.npz --devices cpu

Needs only torch, torchvision, numpy (and pillow for a JPEG folder).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from fer_pipeline.core.augmentation.transforms import (
    DEFAULT_POLICY,
    BatchAugment,
    build_per_image_transform,
)
from fer_pipeline.core.pixels import to_float
from fer_pipeline.runner.dataset_loading import load_split


class FaceDataset(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, transform) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.images[index])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batched_epoch(images: np.ndarray, policy: dict, device: torch.device, batch_size: int) -> Callable[[], None]:
    """One pass of BatchAugment over the faces, already on the device as uint8."""
    data = torch.from_numpy(images).to(device)
    augment = BatchAugment(policy).to(device).train()
    generator = torch.Generator(device=device).manual_seed(0)

    def run() -> None:
        for i in range(0, len(data), batch_size):
            out = augment(to_float(data[i : i + batch_size]), generator=generator)
        assert out.shape[-1] == augment.crop_size

    return run


def dataloader_epoch(
    images: np.ndarray, policy: dict, device: torch.device, batch_size: int, workers: int
) -> Callable[[], None]:
    """One pass of a DataLoader applying the per-image v2 transform, batches moved to the device."""
    loader = torch.utils.data.DataLoader(
        FaceDataset(images, build_per_image_transform(policy)),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        persistent_workers=workers > 0,  # worker start-up is not counted after the warm-up pass
        pin_memory=device.type == "cuda",
    )

    def run() -> None:
        for batch in loader:
            out = batch.to(device, non_blocking=True)
        assert out.shape[-1] == policy["crop_size"]

    return run


def measure(run: Callable[[], None], device: torch.device, n_images: int) -> float:
    """images/s of one pass."""
    sync(device)
    start = time.perf_counter()
    run()
    sync(device)
    return n_images / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="FER2013 folder or canonical .npz (default: random faces)")
    parser.add_argument("--n", type=int, default=4096, help="number of faces (default 4096)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", default="0,2", help="DataLoader num_workers to compare")
    parser.add_argument("--devices", default="cpu,cuda", help="devices to try (cuda skipped if absent)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best is reported")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.data:
        images, _ = load_split(args.data, "train", args.n)
    else:
        images = np.random.default_rng(0).integers(0, 256, (args.n, 48, 48), dtype=np.uint8)
    policy = dict(DEFAULT_POLICY)
    print(f"faces: {len(images)} ({args.data or 'random'}), batch {args.batch_size}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")
    print(f"policy: {policy}")
    methods = []  # (device, method, workers, one-pass callable)
    for name in args.devices.split(","):
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            continue
        methods.append((device, "BatchAugment (whole batch on device)", "-",
                        batched_epoch(images, policy, device, args.batch_size)))
        for workers in (int(w) for w in args.workers.split(",")):
            methods.append((device, "DataLoader + v2 per-image transform", str(workers),
                            dataloader_epoch(images, policy, device, args.batch_size, workers)))
    for device, _, _, run in methods:  # warm-up: kernels, allocator, worker start-up
        run()
    # interleaved rounds, best of each: on a shared machine the others' load hits every method alike
    rates = [[] for _ in methods]
    for _ in range(args.rounds):
        for rate, (device, _, _, run) in zip(rates, methods):
            rate.append(measure(run, device, len(images)))
    print(f"\n{'device':<7} {'method':<38} {'workers':>7} {'best img/s':>11} {'median':>9} {'batched speed-up':>17}")
    for (device, method, workers, _), rate in zip(methods, rates):
        batched = max(next(r for (d, m, _, _), r in zip(methods, rates) if d == device and m.startswith("Batch")))
        print(f"{device.type:<7} {method:<38} {workers:>7} {max(rate):>11,.0f} {np.median(rate):>9,.0f} "
              f"{batched / max(rate):>16.1f}x")


if __name__ == "__main__":
    main()
