"""Is bf16 autocast safe for training? float32 and bf16 CPU training runs on a short schedule,
several seeds each, side by side in one run: validation macro-F1 per run, the mean and the spread
between seeds (the noise a precision difference has to be compared with), and wall time.

    python benchmarks/bench_precision.py --data ../shared/datasets/fer2013                 # defaults below
    python benchmarks/bench_precision.py --data data/03_primary/fer_dataset.npz --seeds 0,1 --epochs 2

Each run trains ``core.training.loop.train_classifier`` (the pipeline's training loop: AdamW, cosine, EMA,
label smoothing 0.1, the default augmentation) from scratch on ``--n`` training faces drawn at
random (the same for every run) and selects its best epoch on ``--n-val`` PublicTest faces.
Only ``amp`` differs between the two precisions; seeds change the initialisation, the batch
order and the augmentation. The evaluation side of the question (the same trained model scored
in float32 and in bf16) is ``bench_evaluate.py --model ... --amp off,auto``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fer_pipeline.core.augmentation.transforms import DEFAULT_POLICY
from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.device import amp_mode, autocast_dtype_for, cpu_bf16_units, precision_name
from fer_pipeline.core.models import STEMS
from fer_pipeline.core.training.config import TrainConfig
from fer_pipeline.core.training.loop import train_classifier
from fer_pipeline.runner.dataset_loading import load_split


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="FER2013 folder or canonical .npz")
    parser.add_argument("--n", type=int, default=6000, help="training faces (random, the same for every run)")
    parser.add_argument("--n-val", type=int, default=1500, help="PublicTest faces that select the best epoch")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--amp", default="off,auto", help="comma list of amp settings (core.device.AMP_MODES)")
    parser.add_argument("--stem", choices=STEMS, default="imagenet")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    train_x, train_y = load_split(args.data, "train", args.n)
    val_x, val_y = load_split(args.data, "val", args.n_val)
    counts = [int((train_y == c).sum()) for c in range(len(CLASSES))]
    seeds = [int(s) for s in args.seeds.split(",")]
    amps = [amp_mode(a) for a in args.amp.split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU bf16 units: {cpu_bf16_units() or 'none'}")
    print(f"ResNet-34 stem={args.stem}, {len(train_y)} training faces, {len(val_y)} PublicTest faces, "
          f"{args.epochs} epochs, batch {args.batch_size}, seeds {seeds}\n")
    print(f"{'amp':>4} {'precision':>9} {'seed':>4} {'val macro-F1':>12} {'val acc.':>8} {'best ep.':>8} "
          f"{'img/s':>7} {'seconds':>8}")
    results: dict[str, list[tuple[float, float, float]]] = {}
    for seed in seeds:  # seeds outermost: a drift of the machine's speed hits both precisions alike
        for amp in amps:
            cfg = TrainConfig.from_dict({
                "epochs": args.epochs, "batch_size": args.batch_size, "optimizer": "adamw", "lr": 0.002,
                "weight_decay": 0.05, "warmup_epochs": 1, "ema_decay": 0.99, "seed": seed, "amp": amp,
                "device": "cpu",
            })
            start = time.perf_counter()
            result = train_classifier(train_x, train_y, val_x, val_y, counts, {"stem": args.stem}, cfg,
                                      DEFAULT_POLICY, progress=False)
            seconds = time.perf_counter() - start
            best = result.best_metrics
            rate = statistics.mean(row["images_per_s"] for row in result.history)
            results.setdefault(amp, []).append((best["macro_f1"], best["accuracy"], seconds))
            print(f"{amp:>4} {result.device_info['autocast']:>9} {seed:>4} {best['macro_f1']:>12.4f} "
                  f"{best['accuracy']:>8.4f} {result.best_epoch:>8} {rate:>7.1f} {seconds:>8.1f}", flush=True)

    print(f"\n{'amp':>4} {'precision':>9} {'macro-F1 mean':>13} {'seed std':>8} {'range':>15} {'acc. mean':>9} "
          f"{'seconds':>8}")
    for amp, rows in results.items():
        f1 = [r[0] for r in rows]
        spread = statistics.stdev(f1) if len(f1) > 1 else float("nan")
        precision = precision_name(autocast_dtype_for(amp, torch.device("cpu")))
        print(f"{amp:>4} {precision:>9} {statistics.mean(f1):>13.4f} {spread:>8.4f} "
              f"{min(f1):>7.4f}-{max(f1):.4f} {statistics.mean(r[1] for r in rows):>9.4f} "
              f"{statistics.mean(r[2] for r in rows):>8.1f}")
    if len(results) == 2:
        (a, rows_a), (b, rows_b) = results.items()
        gap = statistics.mean(r[0] for r in rows_b) - statistics.mean(r[0] for r in rows_a)
        paired = [rb[0] - ra[0] for ra, rb in zip(rows_a, rows_b, strict=True)]
        print(f"\nmacro-F1 {b} - {a}: {gap:+.4f} (per seed: {', '.join(f'{d:+.4f}' for d in paired)})")


if __name__ == "__main__":
    main()
