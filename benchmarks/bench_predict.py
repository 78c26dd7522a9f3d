"""Predict throughput on CPU: photos -> Haar face detection -> ResNet34 -> CSV rows.

Generates demo photos (1-2 drawn faces each, plus one without a face), then times
``core.predict.predict_photos`` end to end and the detector alone, and prints photos/s and faces/s.

    python benchmarks/bench_predict.py                       # random-weight default model
    python benchmarks/bench_predict.py --model data/06_models/resnet34.pt --photos 40
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.data import MEAN, STD
from fer_pipeline.core.models import build_resnet34, load_model, model_config
from fer_pipeline.core.predict import (
    FaceDetector,
    collect_image_files,
    load_image,
    predict_photos,
    to_gray,
)
from fer_pipeline.demo import write_demo_photos


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model file (default: random-weight ResNet34 with the default stem)")
    parser.add_argument("--stem", default="small", choices=("small", "imagenet"))
    parser.add_argument("--photos", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.model:
        model, config = load_model(args.model)
        label = args.model
    else:
        model = build_resnet34(stem=args.stem).eval()
        config = model_config(stem=args.stem, classes=list(CLASSES), input_size=44, mean=MEAN, std=STD)
        label = f"random ResNet34 (stem={args.stem}, input 44)"
    with tempfile.TemporaryDirectory() as tmp:
        write_demo_photos(tmp, n_photos=args.photos, seed=0)
        files = collect_image_files([tmp])
        detector = FaceDetector()
        start = time.perf_counter()
        for path in files:
            detector.detect(to_gray(load_image(path)))
        detect_seconds = time.perf_counter() - start
        predict_photos([tmp], model, config, device="cpu", progress=False)  # warm-up
        start = time.perf_counter()
        result = predict_photos([tmp], model, config, device="cpu", progress=False)
        seconds = time.perf_counter() - start
    faces = result.num_faces
    print(f"model: {label}; {len(files)} photos (480x360, one without a face), torch threads {torch.get_num_threads()}")
    print(f"{'stage':<34}{'seconds':>9}{'photos/s':>10}{'faces/s':>9}")
    print(f"{'decode + Haar detection':<34}{detect_seconds:9.2f}{len(files) / detect_seconds:10.1f}{faces / detect_seconds:9.1f}")
    print(f"{'predict_photos end to end':<34}{seconds:9.2f}{len(files) / seconds:10.1f}{faces / seconds:9.1f}")
    print(f"faces found: {faces}; photos without a face: {len(result.no_face)}; unreadable: {len(result.unreadable)}")


if __name__ == "__main__":
    main()
