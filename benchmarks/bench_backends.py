"""The two inference back-ends side by side on the CPU: PyTorch (float32, bf16) and ONNX Runtime.

For the default model (the ``small`` stem, random weights: speed does not depend on them) and, with
``--model``, a trained model file (the ``cpu`` environment's, ``small_pool``), one table:

* classification alone, crops/s: ``classify_crops`` on ``--crops`` drawn 48x48 faces in one call,
  torch float32 (amp off), torch bf16 (amp on: native only where the CPU has bf16 units, else
  emulated and slow), ONNX Runtime float32 (the model exported with ``core.onnx_export``, checked)
  and int8 (``core.onnx_int8``, calibrated on 512 training faces with ``--data``, else drawn ones);
* ``fer-predict`` end to end, faces/s: its ``main`` in this process (model load, decode, YuNet
  detection, crops, classification, CSV and annotated images) on the same demo photos as
  benchmarks/bench_predict.py (``write_demo_photos``), ``--backend torch`` (amp auto, the default)
  against ``--backend onnxruntime`` with each exported ``.onnx``;
* video, frames/s: ``predict_video`` on bench_predict.py's 640x480 clip (``demo.write_demo_clip``), every frame,
  for each back-end;
* with ``--data`` (the FER2013 folder, or a ``fer_dataset.npz``) and ``--model``: PrivateTest (the
  test split) accuracy of each back-end and its top-1 agreement with torch float32.

The alternatives run side by side in interleaved rounds and the best round is reported (the
machine may be shared). ``--markdown OUT`` writes the table (docs/backends.md) with its command.

    python benchmarks/bench_backends.py --photos 4 --crops 64 --frames 10 --rounds 1   # a quick look
    python benchmarks/bench_backends.py --model data/cpu/06_models/resnet34.pt \\
        --data ../shared/datasets/fer2013 --markdown docs/backends.md
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from fer_pipeline.commands.predict import main as fer_predict
from fer_pipeline.core.device import cpu_bf16_units
from fer_pipeline.core.faces.classify import classify_crops
from fer_pipeline.core.faces.recognizer import EmotionRecognizer
from fer_pipeline.core.models import build_resnet34, load_model, model_config, save_model
from fer_pipeline.core.onnx_export import export_onnx, synthetic_faces
from fer_pipeline.core.onnx_int8 import CALIBRATION_FACES, export_int8
from fer_pipeline.core.onnx_model import default_threads, load_onnx_model
from fer_pipeline.core.predict.video import predict_video
from fer_pipeline.demo import write_demo_clip, write_demo_photos

#: The classifier settings compared: (name, back-end, amp); the onnxruntime ones each run their own
#: file (float32: ``export_onnx``; int8: ``onnx_int8.export_int8``, calibrated on training faces).
SETTINGS = (("torch float32", "torch", "off"), ("torch bf16", "torch", "on"),
            ("onnxruntime float32", "onnxruntime", "off"), ("onnxruntime int8", "onnxruntime", "off"))
ONNX_SETTINGS = tuple(name for name, backend, _ in SETTINGS if backend == "onnxruntime")


def best_of(rounds: int, runs: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Each run's best (highest) rate over ``rounds`` interleaved rounds, after one warm-up each."""
    for run in runs.values():
        run()
    best = dict.fromkeys(runs, 0.0)
    for _ in range(rounds):
        for name, run in runs.items():
            best[name] = max(best[name], run())
    return best


def classifiers(pt: Path, onnx: dict[str, Path]) -> tuple[dict[str, object], dict]:
    """({setting: the torch module or its ONNX Runtime model}, config)."""
    model, config = load_model(pt)
    return {name: load_onnx_model(onnx[name]) if backend == "onnxruntime" else model
            for name, backend, _ in SETTINGS}, config


def crop_rates(pt: Path, onnx: dict[str, Path], crops: np.ndarray, rounds: int) -> dict[str, float]:
    models, config = classifiers(pt, onnx)

    def rate(name: str, amp: str) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            classify_crops(models[name], crops, config, device="cpu", amp=amp)
            return len(crops) / (time.perf_counter() - start)
        return run

    return best_of(rounds, {name: rate(name, amp) for name, _, amp in SETTINGS})


def fer_predict_rates(pt: Path, onnx: dict[str, Path], photos: Path, out: Path, rounds: int) -> dict[str, float]:
    """faces/s of fer-predict end to end, torch (its defaults) against onnxruntime (each .onnx)."""
    def rate(backend: str, model: Path, name: str) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                code = fer_predict([str(photos), "--model", str(model), "--backend", backend, "--device", "cpu",
                                    "--quiet", "--output", str(out / name)])
            seconds = time.perf_counter() - start
            if code != 0:
                raise RuntimeError(f"fer-predict --backend {backend} --model {model} exited with {code}")
            with open(out / name / "predictions.csv", newline="", encoding="utf-8") as handle:
                faces = sum(row["status"] == "face" for row in csv.DictReader(handle))
            return faces / seconds
        return run

    runs = {"torch": rate("torch", pt, "torch")}
    runs.update({name: rate("onnxruntime", onnx[name], name.replace(" ", "_")) for name in ONNX_SETTINGS})
    return best_of(rounds, runs)


def video_rates(pt: Path, onnx: dict[str, Path], clip: Path, out: Path, rounds: int) -> dict[str, float]:
    recognizers = {"torch": EmotionRecognizer.load(pt, device="cpu"),
                   **{name: EmotionRecognizer.load(onnx[name]) for name in ONNX_SETTINGS}}

    def rate(name: str) -> Callable[[], float]:
        def run() -> float:
            return predict_video(clip, recognizers[name], annotated_path=out / f"{name.replace(' ', '_')}.mp4",
                                 progress=False).frames_per_second
        return run

    return best_of(rounds, {name: rate(name) for name in recognizers})


def accuracy(pt: Path, onnx: dict[str, Path], faces: np.ndarray, labels: np.ndarray) -> dict[str, tuple[float, float]]:
    """{setting: (accuracy, top-1 agreement with torch float32)} on ``faces``."""
    models, config = classifiers(pt, onnx)
    predictions = {name: classify_crops(models[name], faces, config, device="cpu", amp=amp).argmax(1)
                   for name, _, amp in SETTINGS}
    reference = predictions["torch float32"]
    return {name: (float((p == labels).mean()), float((p == reference).mean())) for name, p in predictions.items()}


def model_files(args: argparse.Namespace, folder: Path, check_faces: np.ndarray,
                calibration: np.ndarray) -> list[tuple[str, Path, dict[str, Path]]]:
    """(label, .pt, {setting: .onnx}) of the default model (random weights) and of ``--model``, each
    exported (float32 and int8, calibrated on ``calibration``, training faces) and checked."""
    torch.manual_seed(0)
    files = [("default `small` stem (random)",
              save_model(folder / "default.pt", build_resnet34(stem="small").eval(),
                         model_config(stem="small", input_size=44)))]
    if args.model:
        files.append((f"`{Path(args.model).name}` ({load_model(args.model)[1].get('stem')} stem)", Path(args.model)))
    exported = []
    for index, (label, pt) in enumerate(files):
        onnx = {name: folder / f"model_{index}_{name.split()[-1]}.onnx" for name in ONNX_SETTINGS}
        model, config = load_model(pt)
        agreement = export_onnx(model, config, onnx["onnxruntime float32"], check_faces, source=str(pt))
        int8 = export_int8(model, config, onnx["onnxruntime int8"], check_faces, calibration, source=str(pt))
        print(f"{label}: exported, max logit diff {agreement.max_abs_diff:.2g} on {agreement.faces} faces; int8 "
              f"(calibrated on {len(calibration)} training faces) top-1 the same on {int8.top1_agreement:.2%}",
              flush=True)
        exported.append((label, pt, onnx))
    return exported


def table(columns: list[str], rows: list[tuple[str, list[str]]]) -> str:
    lines = ["| | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    return "\n".join(lines + [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows])


def measure(args: argparse.Namespace, tmp: Path) -> tuple[list[str], list[tuple[str, list[str]]]]:
    test, calibration = None, synthetic_faces(CALIBRATION_FACES, seed=2)
    if args.data:
        from fer_pipeline.runner.dataset_loading import load_split

        test = load_split(args.data, "test", limit=args.test_limit)
        calibration = load_split(args.data, "train", limit=CALIBRATION_FACES)[0]  # never test faces
    crops = np.resize(synthetic_faces(64, seed=1), (args.crops, 48, 48))
    files = model_files(args, tmp, test[0][:256] if test is not None else synthetic_faces(64), calibration)
    write_demo_photos(tmp / "photos", n_photos=args.photos, seed=0)
    clip = write_demo_clip(tmp / "clip.avi", args.frames)
    rows: dict[str, list[str]] = {}
    for label, pt, onnx in files:
        print(f"timing {label} ...", flush=True)
        for name, value in crop_rates(pt, onnx, crops, args.rounds).items():
            rows.setdefault(f"crops/s, {name}", []).append(f"{value:.1f}")
        for name, value in fer_predict_rates(pt, onnx, tmp / "photos", tmp / "out", args.rounds).items():
            rows.setdefault(f"fer-predict faces/s, {name}", []).append(f"{value:.1f}")
        for name, value in video_rates(pt, onnx, clip, tmp, args.rounds).items():
            rows.setdefault(f"video frames/s, {name}", []).append(f"{value:.1f}")
        trained = test is not None and pt == Path(args.model or "")
        scores = accuracy(pt, onnx, *test) if trained else {}
        for name, _, _ in SETTINGS:
            acc, agree = scores.get(name, (None, None))
            rows.setdefault(f"PrivateTest accuracy, {name}", []).append("–" if acc is None else f"{acc:.4f}")
            if name != "torch float32":  # the reference
                rows.setdefault(f"top-1 agreement with torch float32, {name}", []).append(
                    "–" if agree is None else f"{agree:.2%}")
    if test is None:
        rows = {name: cells for name, cells in rows.items() if not name.startswith(("PrivateTest", "top-1"))}
    return [label for label, _, _ in files], list(rows.items())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a trained model file (e.g. data/cpu/06_models/resnet34.pt)")
    parser.add_argument("--data", help="FER2013 folder or fer_dataset.npz: PrivateTest accuracy (with --model)")
    parser.add_argument("--test-limit", type=int, default=None, help="only N test faces, drawn at random")
    parser.add_argument("--photos", type=int, default=30, help="demo photos for fer-predict (as bench_predict.py)")
    parser.add_argument("--crops", type=int, default=512, help="crops classified per timed call")
    parser.add_argument("--frames", type=int, default=120, help="frames of the video clip")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds (the best is reported)")
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args(argv)
    command = " ".join(["python benchmarks/bench_backends.py", *(sys.argv[1:] if argv is None else argv)])
    import onnxruntime

    setup = (f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__} "
             f"({default_threads()} intra-op threads), CPU bf16 units: {cpu_bf16_units() or 'none'}")
    print(setup, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_backends_") as tmp:
        columns, rows = measure(args, Path(tmp))
    report = "\n".join([
        f"Written by `{command}`: {setup}; best of {args.rounds} interleaved rounds; {args.crops} crops per call; "
        f"fer-predict on {args.photos + 1} demo photos (480x360, one without a face); a {args.frames}-frame "
        "640x480 clip, every frame processed.", "", table(columns, rows)])
    print("\n" + report)
    if args.markdown:
        Path(args.markdown).write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
