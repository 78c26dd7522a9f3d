"""Training throughput: the on-device fast path of core.train vs a JPEG DataLoader baseline.

Both paths train the same model (ResNet-34, same stem, SGD, bf16 autocast on CUDA) on the
same device, one after the other in one run:

* fast:  the uint8 faces resident on the device; per step a batch is indexed there,
  augmented per sample by ``BatchAugment``, normalised (``core.train.prepare_train_batch``);
* naive: ``torch.utils.data.DataLoader`` over JPEG files: PIL decode + per-image torchvision v2
  transforms (``core.augment.build_per_image_transform``) in ``--workers`` processes, batches
  copied to the device.

Images/s counts training images through forward + backward + optimiser step, after
``--warmup`` untimed steps. The fast path's one-time JPEG decode is reported separately.

Usage::

    python benchmarks/bench_training.py                                  # random JPEGs, auto device
    python benchmarks/bench_training.py --data /work/shared/datasets/fer2013 --steps 200
    python benchmarks/bench_training.py --device cpu --stem imagenet --steps 5 --batch-size 32 --workers 1

Needs only torch, torchvision, numpy and pillow.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

try:
    import fer_pipeline  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fer_pipeline.core.augment import DEFAULT_POLICY, BatchAugment, build_per_image_transform  # noqa: E402
from fer_pipeline.core.classes import CLASSES  # noqa: E402
from fer_pipeline.core.data import normalize, resolve_device  # noqa: E402
from fer_pipeline.core.models import build_resnet34  # noqa: E402
from fer_pipeline.core.train import autocast_dtype_for, epoch_batch_indices, prepare_train_batch  # noqa: E402


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
    """JPEG paths and labels of train/<class>/*.jpg (or <class>/*.jpg)."""
    files = sorted((folder / "train").glob("*/*.jpg")) or sorted(folder.glob("*/*.jpg"))
    files = [f for f in files if f.parent.name in CLASSES]
    if not files:
        raise SystemExit(f"no <class>/*.jpg files under {folder}")
    if limit:
        files = files[:: max(1, len(files) // limit)][:limit]  # spread over all classes
    return files, np.array([CLASSES.index(f.parent.name) for f in files], dtype=np.int64)


def read_grey(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.array(image.convert("L"), dtype=np.uint8)  # a writable copy


class JpegFaces(torch.utils.data.Dataset):
    """The naive path: decode + augment one image per __getitem__."""

    def __init__(self, files: list[Path], labels: np.ndarray, policy: dict) -> None:
        self.files, self.labels = files, labels
        self.transform = build_per_image_transform(policy, train=True)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(read_grey(self.files[index])), int(self.labels[index])


def make_model(stem: str, device: torch.device, channels_last: bool, compile_model: bool, seed: int):
    torch.manual_seed(seed)
    model = build_resnet34(stem=stem).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    return (torch.compile(model) if compile_model else model), optimizer


def step(model, optimizer, x, y, autocast_dtype, device) -> torch.Tensor:
    with torch.autocast(device.type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
        loss = F.cross_entropy(model(x).float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_fast(images, labels, args, device, policy) -> float:
    model, optimizer = make_model(args.stem, device, args.channels_last, args.compile, args.seed)
    autocast_dtype = autocast_dtype_for(True, device)
    x_all = torch.from_numpy(images).to(device)
    y_all = torch.from_numpy(labels).to(device)
    augment = BatchAugment(policy).to(device)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    total = args.warmup + args.steps
    per_pass = max(1, len(images) // args.batch_size)
    batches = torch.cat([epoch_batch_indices(len(images), per_pass, args.batch_size, generator, device)
                         for _ in range(-(-total // per_pass))])
    loss_sum = torch.zeros((), device=device)
    for i in range(total):
        if i == args.warmup:
            sync(device)
            start = time.perf_counter()
        x, y = prepare_train_batch(x_all, y_all, batches[i], augment, None, 1, args.channels_last, generator)
        loss_sum += step(model, optimizer, x, y, autocast_dtype, device)
    loss_sum.item()
    sync(device)
    return args.steps * args.batch_size / (time.perf_counter() - start)


def bench_naive(files, labels, args, device, policy) -> float:
    model, optimizer = make_model(args.stem, device, args.channels_last, args.compile, args.seed)
    autocast_dtype = autocast_dtype_for(True, device)
    loader = torch.utils.data.DataLoader(
        JpegFaces(files, labels, policy), batch_size=args.batch_size, shuffle=True, drop_last=True,
        num_workers=args.workers, pin_memory=device.type == "cuda", persistent_workers=args.workers > 0,
    )
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    total, i = args.warmup + args.steps, 0
    loss_sum = torch.zeros((), device=device)
    while i < total:
        for x, y in loader:
            if i == args.warmup:
                sync(device)
                start = time.perf_counter()
            x = normalize(x.to(device, non_blocking=True)).contiguous(memory_format=memory_format)
            loss_sum += step(model, optimizer, x, y.to(device, non_blocking=True), autocast_dtype, device)
            i += 1
            if i == total:
                break
    loss_sum.item()
    sync(device)
    return args.steps * args.batch_size / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="FER2013 folder (train/<class>/*.jpg); default: random JPEGs in a temp dir")
    parser.add_argument("--num-images", type=int, default=4096, help="images used (generated or read)")
    parser.add_argument("--steps", type=int, default=100, help="timed training steps per path")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--stem", choices=("small", "imagenet"), default="small")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers of the naive path")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (both paths)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="channels_last memory format (default: on for CUDA)")
    parser.add_argument("--crop-size", type=int, default=DEFAULT_POLICY["crop_size"])
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    if args.channels_last is None:
        args.channels_last = device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    policy = {**DEFAULT_POLICY, "crop_size": args.crop_size}

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.data) if args.data else Path(tmp)
        if not args.data:
            write_random_jpegs(folder, args.num_images, args.seed)
        files, labels = list_faces(folder, args.num_images)
        if len(files) < args.batch_size:
            raise SystemExit(f"{len(files)} images < batch size {args.batch_size}")
        decode_start = time.perf_counter()
        images = np.stack([read_grey(f) for f in files])
        decode_seconds = time.perf_counter() - decode_start

        fast = bench_fast(images, labels, args, device, policy)
        naive = bench_naive(files, labels, args, device, policy)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {device} [{name}]  torch {torch.__version__}")
    print(f"ResNet-34 stem={args.stem}, input {args.crop_size}px, batch {args.batch_size}, {args.steps} timed steps "
          f"(+{args.warmup} warmup), {len(files)} images, compile={args.compile}, channels_last={args.channels_last}, "
          f"autocast={'bf16' if device.type == 'cuda' else 'off'}")
    print(f"one-time JPEG decode for the fast path: {decode_seconds:.2f} s "
          f"({len(files) / decode_seconds:,.0f} images/s)")
    print()
    rows = [
        ("fast: uint8 on device + BatchAugment", fast),
        (f"naive: DataLoader JPEG + v2 per image ({args.workers} workers)", naive),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'path':<{width}}  {'images/s':>10}  {'ms/step':>8}")
    for label, rate in rows:
        print(f"{label:<{width}}  {rate:>10,.0f}  {1000 * args.batch_size / rate:>8.1f}")
    print(f"{'speed-up (fast / naive)':<{width}}  {fast / naive:>10.2f}x")


if __name__ == "__main__":
    main()
