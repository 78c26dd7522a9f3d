"""Evaluation speed on CPU: faces/s of ``predict_logits`` and the projected time for the
3,589-face FER2013 PrivateTest split, over batch size x TTA x memory format.

    python benchmarks/bench_evaluate.py                       # random faces, random ResNet-34
    python benchmarks/bench_evaluate.py --n 512 --threads 2   # time 512 faces, project to 3,589
    python benchmarks/bench_evaluate.py --data /path/to/fer2013 --model data/06_models/resnet34.pt
    python benchmarks/bench_evaluate.py --amp off,auto --compile off,on     # float32 vs bf16 vs compile

Random weights time exactly like trained ones. With ``--data`` the faces are the real
PrivateTest images (test/<class>/PrivateTest_*); with ``--data`` and ``--model`` the accuracy
of each configuration is printed too. Besides wall time it prints CPU time, and the 3,589-face
projection from CPU time / threads: on a shared machine wall time includes waiting for other
processes, CPU time does not.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import torch

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.device import (
    amp_mode,
    autocast_dtype_for,
    cpu_bf16_units,
    precision_name,
)
from fer_pipeline.core.evaluation.metrics import compute_metrics
from fer_pipeline.core.inference import predict_logits
from fer_pipeline.core.models import STEMS
from fer_pipeline.runner.dataset_loading import load_split

PRIVATE_TEST_SIZE = 3589


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model file (default: random-weight ResNet-34)")
    parser.add_argument("--data", type=Path, help="FER2013 folder (test/<class>/PrivateTest_*)")
    parser.add_argument("--n", type=int, default=512, help="faces timed per configuration (default 512)")
    parser.add_argument("--batch-sizes", default="64,256")
    parser.add_argument("--tta", default="none,flip")
    parser.add_argument("--channels-last", default="on,off")
    parser.add_argument("--amp", default="off,auto",
                        help="comma list: off (float32), auto (bf16 where the CPU has native bf16), on")
    parser.add_argument("--compile", default="off", help="comma list: off, on (torch.compile the model)")
    parser.add_argument("--stem", default="small", choices=STEMS)
    parser.add_argument("--input-size", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.model:
        from fer_pipeline.core.models import load_model

        model, config = load_model(args.model)
    else:
        from fer_pipeline.core.models import build_resnet34, model_config

        torch.manual_seed(0)
        model = build_resnet34(stem=args.stem).eval()
        config = model_config(stem=args.stem, input_size=args.input_size)

    if args.data:
        images, labels = load_split(args.data, "test")
    else:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, size=(PRIVATE_TEST_SIZE, 48, 48), dtype=np.uint8)
        labels = rng.integers(0, len(CLASSES), size=PRIVATE_TEST_SIZE)
    n = min(args.n, len(images)) if args.n > 0 else len(images)
    subset, subset_labels = images[:n], labels[:n]

    source = f"{len(images)} real PrivateTest faces" if args.data else "random faces"
    print(f"model: {args.model or 'random ResNet-34'} (stem={config.get('stem')}, input={config.get('input_size')}), "
          f"{source}, timing {n}, device={args.device}, torch threads={torch.get_num_threads()}, "
          f"torch {torch.__version__}")
    print(f"CPU bf16 units: {cpu_bf16_units() or 'none'}; 'agree' = top-1 predictions equal to the first amp "
          "setting's (same batch, TTA, memory format, compile)")
    header = (f"{'batch':>5} {'tta':>8} {'ch_last':>7} {'amp':>4} {'precision':>9} {'compile':>7} {'seconds':>8} "
              f"{'faces/s':>8} {'3589 faces (s)':>15} {'cpu s':>7} {'3589 at cpu/threads':>19} {'agree':>7}")
    if args.data and args.model:
        header += f" {'accuracy':>8} {'macro_f1':>8}"
    print(header)
    print("-" * len(header))
    settings = itertools.product([int(b) for b in args.batch_sizes.split(",")], args.tta.split(","),
                                 [c == "on" for c in args.channels_last.split(",")],
                                 [c == "on" for c in args.compile.split(",")])
    for batch_size, tta, channels_last, compiled in settings:
        reference = None  # the first amp setting's top-1 predictions
        for amp in [amp_mode(a) for a in args.amp.split(",")]:
            options = dict(tta=tta, batch_size=batch_size, device=args.device, channels_last=channels_last,
                           amp=amp)
            runner = torch.compile(model) if compiled else model
            # Warm-up: first-call allocations, oneDNN kernel selection, compilation.
            predict_logits(runner, subset[: min(batch_size, n)], config, **options)
            start, cpu_start = time.perf_counter(), time.process_time()
            logits = predict_logits(runner, subset, config, **options)
            predicted = logits.argmax(axis=1)
            reference = predicted if reference is None else reference
            seconds = time.perf_counter() - start
            cpu_seconds = time.process_time() - cpu_start
            rate = n / seconds
            # Wall time on a shared box includes waiting for other processes; CPU time /
            # threads is what it would take with the cores to itself (if threads scale).
            cpu_projection = PRIVATE_TEST_SIZE / n * cpu_seconds / torch.get_num_threads()
            precision = precision_name(autocast_dtype_for(amp, torch.device(args.device)))
            line = (f"{batch_size:>5} {tta:>8} {'on' if channels_last else 'off':>7} {amp:>4} "
                    f"{precision:>9} {'on' if compiled else 'off':>7} {seconds:>8.2f} {rate:>8.1f} "
                    f"{PRIVATE_TEST_SIZE / rate:>15.1f} "
                    f"{cpu_seconds:>7.1f} {cpu_projection:>19.1f} {np.mean(predicted == reference):>7.2%}")
            if args.data and args.model:
                scores = compute_metrics(subset_labels, logits, config['classes'])
                line += f" {scores['accuracy']:>8.4f} {scores['macro_f1']:>8.4f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
