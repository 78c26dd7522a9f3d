"""Data-parallel training throughput: 1 process against N worker processes, side by side in one run.

Both train the same ResNet34 with the same global batch, augmentation policy and seed on random
48x48 faces (``core.training.loop.train_classifier``, and ``core.training.job.train_in_workers`` for N);
the table gives the training images per second of each epoch after the first (the first pays for
start-up). On CUDA each worker takes one GPU; on CPU the workers share the cores
(``--threads`` is the one process's thread count; each of N workers gets threads / N).

Usage::

    python benchmarks/bench_distributed.py                                   # 1 vs 2 processes, auto device
    python benchmarks/bench_distributed.py --nproc 8 --epochs 3 --steps 50   # an 8-GPU node
    python benchmarks/bench_distributed.py --device cpu --stem imagenet --steps 10 --batch-size 64

Needs only torch, torchvision and numpy (``PYTHONPATH=src`` where the package is not installed).
"""

from __future__ import annotations

import argparse
import os
import statistics

import numpy as np
import torch

from fer_pipeline.core.augmentation.transforms import DEFAULT_POLICY
from fer_pipeline.core.models import STEMS
from fer_pipeline.core.training.config import TrainConfig
from fer_pipeline.core.training.distributed import DistributedConfig
from fer_pipeline.core.training.job import train_in_workers
from fer_pipeline.core.training.loop import train_classifier


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nproc", type=int, default=2, help="worker processes of the parallel run")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is not counted)")
    parser.add_argument("--steps", type=int, default=20, help="optimiser steps per epoch")
    parser.add_argument("--batch-size", type=int, default=128, help="the global batch")
    parser.add_argument("--stem", choices=STEMS, default="small")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads of the one process")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    n = args.batch_size * args.steps
    labels = rng.integers(0, 7, n)
    faces = (rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), labels,
             rng.integers(0, 256, (256, 48, 48), dtype=np.uint8), rng.integers(0, 7, 256),
             np.bincount(labels, minlength=7))
    model = {"stem": args.stem}
    cfg = TrainConfig.from_dict({"epochs": args.epochs, "batch_size": args.batch_size, "steps_per_epoch": args.steps,
                                 "seed": args.seed, "device": args.device, "warmup_epochs": 0})
    rows = []
    torch.set_num_threads(args.threads)
    one = train_classifier(*faces, model, cfg, DEFAULT_POLICY, progress=False)
    rows.append(("1 process", one))
    os.environ["OMP_NUM_THREADS"] = str(max(1, args.threads // args.nproc))  # the workers' share of the cores
    many = train_in_workers(*faces, model, cfg, DEFAULT_POLICY, DistributedConfig(nproc_per_node=args.nproc))
    rows.append((f"{args.nproc} processes", many))

    device = one.device_info
    print(f"ResNet34 ({args.stem} stem), global batch {args.batch_size}, {args.steps} steps/epoch, "
          f"{args.epochs} epochs; {device.get('name')} ({device['device']}), torch {device['torch']}")
    print("| run | img/s (mean of epochs 1..) | epoch seconds | ratio |")
    print("|---|---|---|---|")
    base = None
    for name, result in rows:
        later = result.history[1:] or result.history
        speed = statistics.mean(row["images_per_s"] for row in later)
        seconds = statistics.mean(row["epoch_seconds"] for row in later)
        base = base or speed
        print(f"| {name} | {speed:.1f} | {seconds:.2f} | {speed / base:.2f}x |")


if __name__ == "__main__":
    main()
