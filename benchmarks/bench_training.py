"""Training throughput: the on-device fast path of core.training.loop vs a JPEG DataLoader baseline,
side by side in one run (``fer_pipeline.runner.throughput`` holds both paths).

Usage::

    python benchmarks/bench_training.py                                  # random JPEGs, auto device
    python benchmarks/bench_training.py --data ../shared/datasets/fer2013 --steps 200
    python benchmarks/bench_training.py --device cpu --stem imagenet --steps 5 --batch-size 32 --workers 1
    python benchmarks/bench_training.py --device cpu --amp off,auto --compile off,on   # float32 vs bf16 vs compile

Needs only torch, torchvision, numpy and pillow (``PYTHONPATH=src`` where the package is not installed).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from fer_pipeline.core.augmentation.transforms import DEFAULT_POLICY
from fer_pipeline.core.device import (
    amp_mode,
    autocast_dtype_for,
    channels_last_pays,
    cpu_bf16_units,
    precision_name,
    resolve_device,
)
from fer_pipeline.core.models import STEMS
from fer_pipeline.runner.throughput import StepSettings, naive_vs_fast, write_random_jpegs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="FER2013 folder (train/<class>/*.jpg); default: random JPEGs in a temp dir")
    parser.add_argument("--num-images", type=int, default=4096, help="images used (generated or read)")
    parser.add_argument("--steps", type=int, default=100, help="timed training steps per path")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--stem", choices=STEMS, default="small")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers of the naive path")
    parser.add_argument("--amp", default="off,auto",
                        help="comma list of amp settings timed side by side: off (float32), auto (bf16 where "
                             "native), on (bf16 everywhere)")
    parser.add_argument("--compile", default="off", help="comma list: off, on (torch.compile the model, both paths)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="channels_last memory format (default: as training: on for CUDA and for bf16 on CPU)")
    parser.add_argument("--crop-size", type=int, default=DEFAULT_POLICY["crop_size"])
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-naive", action="store_true", help="skip the DataLoader baseline")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    policy = {**DEFAULT_POLICY, "crop_size": args.crop_size}
    amps = [amp_mode(a) for a in args.amp.split(",")]
    compiles = [c == "on" for c in args.compile.split(",")]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {device} [{name}]  torch {torch.__version__}  CPU bf16 units: {cpu_bf16_units() or 'none'}")
    print(f"ResNet-34 stem={args.stem}, input {args.crop_size}px, batch {args.batch_size}, {args.steps} timed steps "
          f"(+{args.warmup} warmup) per path, SGD; naive = DataLoader JPEG + v2 per image ({args.workers} workers)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.data) if args.data else Path(tmp)
        if not args.data:
            write_random_jpegs(folder, args.num_images, args.seed)
        for amp in amps:
            dtype = autocast_dtype_for(amp, device)
            channels_last = channels_last_pays(device, dtype) if args.channels_last is None else args.channels_last
            for compiled in compiles:
                settings = StepSettings(stem=args.stem, batch_size=args.batch_size, steps=args.steps,
                                        warmup=args.warmup, channels_last=channels_last, compile=compiled,
                                        seed=args.seed, workers=args.workers, amp=amp)
                try:
                    result = naive_vs_fast(folder, settings, device, policy, num_images=args.num_images,
                                           smaller_batch_ok=False, naive=not args.no_naive)
                except (FileNotFoundError, ValueError) as exc:
                    raise SystemExit(f"bench_training.py: {exc}") from None
                rows.append((amp, precision_name(dtype), compiled, channels_last, result))
    base = rows[0][4]["fast_images_per_s"]
    print(f"one-time JPEG decode for the fast path: {rows[0][4]['fast_path_one_time_decode_s']:.2f} s\n")
    print(f"{'amp':>4} {'precision':>9} {'compile':>7} {'ch_last':>7} {'fast img/s':>10} {'ms/step':>8} "
          f"{'naive img/s':>11} {'fast/naive':>10} {'vs row 1':>8}")
    for amp, precision, compiled, channels_last, result in rows:
        fast, naive = result["fast_images_per_s"], result["naive_images_per_s"]
        naive_text = f"{naive:>11,.0f} {fast / naive:>9.2f}x" if naive else f"{'-':>11} {'-':>10}"
        print(f"{amp:>4} {precision:>9} {'on' if compiled else 'off':>7} {'on' if channels_last else 'off':>7} "
              f"{fast:>10,.1f} {1000 * args.batch_size / fast:>8.1f} {naive_text} {fast / base:>7.2f}x")


if __name__ == "__main__":
    main()
