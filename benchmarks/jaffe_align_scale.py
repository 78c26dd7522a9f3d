"""``align.ALIGN_SCALE``, chosen on JAFFE: a trained model's scores on JAFFE's photos with the aligned
crop widened ``--scales`` times around FER2013's median framing, against today's square crop.

Each photo (``<rater>.<CODE><n>.<id>.tiff``, CODE one of AN DI FE HA NE SA SU) is read as the predict
stage reads photos, YuNet finds its faces (every JAFFE photo has one; the largest is kept) and the
crops are classified (``classify_crops``, no TTA). Printed per crop: accuracy, macro-F1 and the mean
negative log-likelihood of the true class (smoother than accuracy on 213 photos). Never run it on
a FER2013 test set: the framing is measured on FER2013's training faces, the scale chosen here.

    python benchmarks/jaffe_align_scale.py --model data/06_models/resnet34.pt --data ../shared/datasets/jaffe
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fer_pipeline.core.faces.align import align_crop, can_align
from fer_pipeline.core.faces.classify import classify_crops
from fer_pipeline.core.faces.crops import crop_faces
from fer_pipeline.core.faces.detector import make_detector
from fer_pipeline.core.faces.images import load_image, to_gray
from fer_pipeline.core.models import load_model

JAFFE_CODES = {"AN": "angry", "DI": "disgust", "FE": "fear", "HA": "happy", "NE": "neutral", "SA": "sad",
               "SU": "surprise"}


def jaffe_faces(root: Path) -> tuple[list[np.ndarray], list, list[str]]:
    """(grey photos, the largest YuNet detection of each, class names) of the JAFFE photos with a face."""
    detector = make_detector("yunet")
    grays, detections, labels = [], [], []
    for path in sorted(root.glob("*.tiff")):
        image = load_image(path)
        found = [d for d in detector.detect_faces(image) if can_align(d.landmarks)]
        if not found:
            print(f"no face with landmarks in {path.name}")
            continue
        grays.append(to_gray(image))
        detections.append(max(found, key=lambda d: d.box[2] * d.box[3]))
        labels.append(JAFFE_CODES[path.name.split(".")[1][:2]])
    return grays, detections, labels


def scores(model, config, crops: np.ndarray, labels: list[str]) -> tuple[float, float, float]:
    """(accuracy, macro-F1 over the classes present, mean NLL of the true class)."""
    classes = list(config["classes"])
    truth = np.array([classes.index(label) for label in labels])
    probabilities = classify_crops(model, crops, config, device="cpu")
    predicted = probabilities.argmax(axis=1)
    f1s = []
    for k in np.unique(truth):
        tp = np.sum((predicted == k) & (truth == k))
        precision, recall = tp / max(1, np.sum(predicted == k)), tp / np.sum(truth == k)
        f1s.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    nll = -np.log(np.clip(probabilities[np.arange(len(truth)), truth], 1e-12, 1.0)).mean()
    return float(np.mean(predicted == truth)), float(np.mean(f1s)), float(nll)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model file (fer_pipeline.core.models.save_model)")
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/jaffe"))
    parser.add_argument("--scales", type=float, nargs="+", default=[0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4])
    parser.add_argument("--margins", type=float, nargs="+", default=[0.0, 0.1, 0.2])
    args = parser.parse_args(argv)

    model, config = load_model(args.model)
    grays, detections, labels = jaffe_faces(args.data)
    print(f"{len(labels)} JAFFE photos with a face; model {args.model}")
    print(f"{'crop':22s} {'accuracy':>9s} {'macro_f1':>9s} {'nll':>7s}")
    for margin in args.margins:
        crops = np.stack([crop_faces(gray, [d.box], margin=margin)[0] for gray, d in zip(grays, detections)])
        print(f"{f'square, margin {margin:g}':22s} " + " ".join(f"{v:9.4f}" for v in scores(model, config, crops, labels)))
    for scale in args.scales:
        crops = np.stack([align_crop(gray, d.landmarks, scale=scale) for gray, d in zip(grays, detections)])
        print(f"{f'aligned, scale {scale:g}':22s} " + " ".join(f"{v:9.4f}" for v in scores(model, config, crops, labels)))


if __name__ == "__main__":
    main()
