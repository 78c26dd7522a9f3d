"""Predict throughput on CPU: photos or a video -> Haar face detection -> ResNet34 -> CSV rows.

Photos (default): generates demo photos (1-2 drawn faces each, plus one without a face), then
prints detection alone at full resolution vs on the downscaled copy (``FaceDetector(detect_max_side)``)
with how many faces each finds and how many boxes match (IoU >= 0.5), and ``predict_photos`` end
to end for each detection scale, decode+detect thread count and precision (amp off = float32,
auto = bf16 where the CPU has it).

Video (``--video``): renders a 640x480 clip with the demo renderer (two faces, one moving), then
times ``core.predict.video.predict_video`` (annotated MP4 and CSV written) with every frame processed
and with ``--every-n-frames`` 2 and 3, amp off vs auto.

    python benchmarks/bench_predict.py                       # random-weight default model
    python benchmarks/bench_predict.py --model data/06_models/resnet34.pt --photos 40
    python benchmarks/bench_predict.py --video --frames 120
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.faces.classify import classify_crops
from fer_pipeline.core.faces.crops import crop_faces
from fer_pipeline.core.faces.detector import DETECT_MAX_SIDE, FaceDetector, box_iou
from fer_pipeline.core.faces.images import load_image, to_gray
from fer_pipeline.core.faces.recognizer import EmotionRecognizer
from fer_pipeline.core.models import STEMS, build_resnet34, load_model, model_config
from fer_pipeline.core.pixels import MEAN, STD
from fer_pipeline.core.predict.photos import collect_image_files, predict_photos
from fer_pipeline.core.predict.workers import default_workers
from fer_pipeline.demo import write_demo_clip, write_demo_photos


def matched_boxes(reference: list[list[tuple]], other: list[list[tuple]], min_iou: float = 0.5) -> int:
    """Boxes of ``other`` matching a distinct box of ``reference`` in the same image (IoU >= min_iou)."""
    matches = 0
    for ref_boxes, boxes in zip(reference, other, strict=True):
        free = list(ref_boxes)
        for box in boxes:
            best = max(free, key=lambda ref: box_iou(ref, box), default=None)
            if best is not None and box_iou(best, box) >= min_iou:
                free.remove(best)
                matches += 1
    return matches


def time_detection(grays: list[np.ndarray], detector: FaceDetector) -> tuple[float, list[list[tuple]]]:
    start = time.perf_counter()
    boxes = [detector.detect(gray) for gray in grays]
    return time.perf_counter() - start, boxes


def bench_photos(args: argparse.Namespace, model, config) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write_demo_photos(tmp, n_photos=args.photos, seed=0)
        files = collect_image_files([tmp])
        grays = [to_gray(load_image(path)) for path in files]
        full, small = FaceDetector(detect_max_side=None), FaceDetector(detect_max_side=args.detect_max_side)
        time_detection(grays[:2], small)  # warm-up (cascade load)
        full_s, full_boxes = time_detection(grays, full)
        small_s, small_boxes = time_detection(grays, small)
        print(f"{len(files)} photos (480x360, one without a face), torch threads {torch.get_num_threads()}")
        print(f"{'detection alone (decoded grey)':<44}{'seconds':>9}{'photos/s':>10}{'faces':>7}")
        print(f"{'full resolution':<44}{full_s:9.2f}{len(files) / full_s:10.1f}{sum(map(len, full_boxes)):7d}")
        print(f"{f'detect_max_side={args.detect_max_side}':<44}{small_s:9.2f}{len(files) / small_s:10.1f}"
              f"{sum(map(len, small_boxes)):7d}")
        print(f"boxes matching full resolution (IoU >= 0.5): {matched_boxes(full_boxes, small_boxes)} "
              f"of {sum(map(len, full_boxes))} full / {sum(map(len, small_boxes))} downscaled\n")

        crops = np.concatenate([crop_faces(gray, boxes) for gray, boxes in zip(grays, small_boxes, strict=True)])
        print(f"{'classification alone (ResNet)':<28}{'amp':>14}{'seconds':>9}{'faces/s':>19}")
        for amp in ("off", "auto"):
            classify_crops(model, crops[:8], config, device="cpu", amp=amp)  # warm-up
            start = time.perf_counter()
            classify_crops(model, crops, config, device="cpu", amp=amp)
            seconds = time.perf_counter() - start
            print(f"{f'{len(crops)} crops, one call':<28}{amp:>14}{seconds:9.2f}{len(crops) / seconds:19.1f}")
        print()

        runs = [("full", None, 1, "off"), ("full", None, 1, "auto")]
        runs += [(str(args.detect_max_side), args.detect_max_side, workers, amp)
                 for workers in sorted({1, args.workers}) for amp in ("off", "auto")]
        predict_photos([tmp], EmotionRecognizer(model, config, device="cpu"), progress=False, workers=1)  # warm-up
        print(f"{'predict_photos end to end':<28}{'threads':>8}{'amp':>6}{'seconds':>9}{'photos/s':>10}"
              f"{'faces/s':>9}{'faces':>7}")
        for name, side, workers, amp in runs:
            recognizer = EmotionRecognizer(model, config, detector=FaceDetector(detect_max_side=side), device="cpu",
                                           amp=amp)
            start = time.perf_counter()
            result = predict_photos([tmp], recognizer, progress=False, workers=workers)
            seconds = time.perf_counter() - start
            print(f"{f'detect at {name}':<28}{workers:>8}{amp:>6}{seconds:9.2f}{len(files) / seconds:10.1f}"
                  f"{result.num_faces / seconds:9.1f}{result.num_faces:7d}")


def bench_video(args: argparse.Namespace, model, config) -> None:
    from fer_pipeline.core.predict.video import predict_video

    with tempfile.TemporaryDirectory() as tmp:
        clip = write_demo_clip(Path(tmp) / "clip.avi", args.frames)
        predict_video(clip, EmotionRecognizer(model, config, device="cpu"), progress=False, every_n_frames=5)  # warm-up
        print(f"640x480 clip, {args.frames} frames, 2 faces; decode+detect threads {args.workers}, "
              f"torch threads {torch.get_num_threads()}, detect_max_side={args.detect_max_side}")
        print(f"{'every_n_frames':>15}{'amp':>6}{'seconds':>9}{'frames/s':>10}{'processed':>10}{'faces':>7}"
              f"{'tracks':>7}")
        for every in (1, 2, 3):
            for amp in ("off", "auto"):
                detector = FaceDetector(detect_max_side=args.detect_max_side)
                recognizer = EmotionRecognizer(model, config, detector=detector, device="cpu", amp=amp)
                result = predict_video(clip, recognizer, annotated_path=Path(tmp) / "annotated.mp4",
                                       every_n_frames=every, progress=False, workers=args.workers)
                print(f"{every:>15}{amp:>6}{result.seconds:9.2f}{result.frames_per_second:10.1f}"
                      f"{result.frames_processed:10d}{result.num_faces:7d}{result.num_tracks:7d}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model file (default: random-weight ResNet34 with the default stem)")
    parser.add_argument("--stem", default="small", choices=STEMS)
    parser.add_argument("--photos", type=int, default=30)
    parser.add_argument("--video", action="store_true", help="benchmark a generated 640x480 clip instead")
    parser.add_argument("--frames", type=int, default=90, help="frames of the --video clip")
    parser.add_argument("--detect-max-side", type=int, default=DETECT_MAX_SIDE)
    parser.add_argument("--workers", type=int, default=default_workers(), help="decode+detect threads")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
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
    print(f"model: {label}")
    (bench_video if args.video else bench_photos)(args, model, config)


if __name__ == "__main__":
    main()
