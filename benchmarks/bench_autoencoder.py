"""Training throughput of the convolutional autoencoder (whole uint8 train set on the device).

Usage::

    python benchmarks/bench_autoencoder.py --n 2048 --epochs 2 --device cpu      # random faces
    python benchmarks/bench_autoencoder.py --data /path/to/fer2013 --epochs 20    # full train split
    python benchmarks/bench_autoencoder.py --data data/fer_dataset.npz --smote   # + latent SMOTE

Each ``--amp`` setting (default ``off,auto``: float32, then bf16 where the device has it) trains
its own model from the same seed, side by side in one run. Prints one row per epoch and a summary (device, seconds, images/s, CUDA peak memory). Needs only
torch, numpy (and pillow for a JPEG folder); runs on the GPU box.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fer_pipeline.core.autoencoder.oversampling import latent_smote, oversampling_targets
from fer_pipeline.core.autoencoder.training import AutoencoderConfig, fit_autoencoder
from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.device import autocast_dtype_for, precision_name, resolve_device
from fer_pipeline.runner.dataset_loading import load_split


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="FER2013 folder or canonical .npz (default: random faces)")
    parser.add_argument("--n", type=int, help="number of faces (default: all of --data, else 4096)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--latent-dim", type=int, default=128)
    parser.add_argument("--base-channels", type=int, default=32)
    parser.add_argument("--weighting", default="none", choices=["none", "inverse_frequency", "effective_number"])
    parser.add_argument("--deepsmote", action="store_true", help="add the DeepSMOTE penalty term")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", default="off,auto",
                        help="comma list timed side by side: off (float32), auto (bf16 where native), on")
    parser.add_argument("--smote", action="store_true", help="also time latent_smote up to 50%% of the largest class")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    if args.data:
        images, labels = load_split(args.data, "train", args.n)
    else:
        rng = np.random.default_rng(0)
        n = args.n or 4096
        images = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
        labels = rng.integers(0, len(CLASSES), n).astype(np.int64)
    load_seconds = time.perf_counter() - start
    print(f"faces: {len(images)} ({args.data or 'random'}, loaded in {load_seconds:.1f} s), "
          f"class counts {np.bincount(labels, minlength=len(CLASSES)).tolist()}")
    summary = []
    for amp in args.amp.split(","):
        cfg = AutoencoderConfig(
            latent_dim=args.latent_dim,
            base_channels=args.base_channels,
            epochs=args.epochs,
            batch_size=args.batch_size,
            weighting=args.weighting,
            deepsmote=args.deepsmote,
            device=args.device,
            amp=amp,
        )
        precision = precision_name(autocast_dtype_for(cfg.amp, resolve_device(cfg.device)))
        print(f"\n== amp {cfg.amp} ({precision}): config {cfg.to_dict()}, torch {torch.__version__}, "
              f"threads {torch.get_num_threads()}")
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        model, history = fit_autoencoder(images, labels, cfg, progress=False)
        total = time.perf_counter() - start
        device = next(model.parameters()).device
        print(f"{'epoch':>5} {'loss':>9} {'seconds':>8} {'images/s':>10}")
        for row in history:
            print(f"{row['epoch']:>5} {row['loss']:>9.5f} {row['seconds']:>8.2f} {row['images_per_s']:>10,.0f}")
        steady = history[1:] or history  # epoch 1 includes warm-up (cuDNN autotune, allocator)
        rate = float(np.mean([r["images_per_s"] for r in steady]))
        device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        print(f"device: {device} ({device_name}); epochs: {len(history)}, total seconds (incl. setup): {total:.2f}, "
              f"images/s after epoch 1: {rate:,.0f}")
        if device.type == "cuda":
            print(f"peak CUDA memory: {torch.cuda.max_memory_allocated(device) / 2**20:,.0f} MiB")
        print("final per-class recon MSE: " + ", ".join(
            f"{k.removeprefix('recon_mse_')} {v:.4f}" for k, v in history[-1].items() if k.startswith("recon_mse_")))
        summary.append((cfg.amp, precision, rate, history[-1]["loss"]))

    print(f"\n{'amp':>4} {'precision':>9} {'images/s':>10} {'vs row 1':>8} {'final loss':>10}")
    for amp, precision, rate, loss in summary:
        print(f"{amp:>4} {precision:>9} {rate:>10,.0f} {rate / summary[0][2]:>7.2f}x {loss:>10.5f}")

    if args.smote:
        counts = np.bincount(labels, minlength=len(CLASSES))
        targets = oversampling_targets(counts, 0.5)
        start = time.perf_counter()
        synthetic, synthetic_labels = latent_smote(model, images, labels, targets, device=device)
        seconds = time.perf_counter() - start
        print(f"latent_smote: {len(synthetic)} synthetic faces "
              f"{np.bincount(synthetic_labels, minlength=len(CLASSES)).tolist()} in {seconds:.2f} s")


if __name__ == "__main__":
    main()
