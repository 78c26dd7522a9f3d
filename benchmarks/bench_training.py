"""Training throughput: the on-device fast path of core.train vs a JPEG DataLoader baseline,
side by side in one run (``fer_pipeline.throughput`` holds both paths).

Usage::

    python benchmarks/bench_training.py                                  # random JPEGs, auto device
    python benchmarks/bench_training.py --data ../shared/datasets/fer2013 --steps 200
    python benchmarks/bench_training.py --device cpu --stem imagenet --steps 5 --batch-size 32 --workers 1

Needs only torch, torchvision, numpy and pillow (``PYTHONPATH=src`` where the package is not installed).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from fer_pipeline.core.augment import DEFAULT_POLICY
from fer_pipeline.core.device import resolve_device
from fer_pipeline.throughput import StepSettings, naive_vs_fast, write_random_jpegs


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
    channels_last = device.type == "cuda" if args.channels_last is None else args.channels_last
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    policy = {**DEFAULT_POLICY, "crop_size": args.crop_size}
    settings = StepSettings(stem=args.stem, batch_size=args.batch_size, steps=args.steps, warmup=args.warmup,
                            channels_last=channels_last, compile=args.compile, seed=args.seed, workers=args.workers)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.data) if args.data else Path(tmp)
        if not args.data:
            write_random_jpegs(folder, args.num_images, args.seed)
        try:
            result = naive_vs_fast(folder, settings, device, policy, num_images=args.num_images,
                                   smaller_batch_ok=False)
        except (FileNotFoundError, ValueError) as exc:
            raise SystemExit(f"bench_training.py: {exc}") from None
    fast, naive, decode_seconds = result["fast_images_per_s"], result["naive_images_per_s"], \
        result["fast_path_one_time_decode_s"]

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {device} [{name}]  torch {torch.__version__}")
    print(f"ResNet-34 stem={args.stem}, input {args.crop_size}px, batch {args.batch_size}, {args.steps} timed steps "
          f"(+{args.warmup} warmup), {result['images']} images, compile={args.compile}, channels_last={channels_last}, "
          f"autocast={'bf16' if device.type == 'cuda' else 'off'}")
    print(f"one-time JPEG decode for the fast path: {decode_seconds:.2f} s "
          f"({result['images'] / decode_seconds:,.0f} images/s)")
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
