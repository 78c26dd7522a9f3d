"""The demo dataset on disk: drawn faces in FER2013's folder layout, and photos for predict.

* ``generate_demo_dataset``: ``root/train/<class>/Training_<k>.jpg`` and
  ``root/test/<class>/{PublicTest,PrivateTest}_<k>.jpg`` in FER2013's class proportions,
  byte-deterministic from the seed, plus ``root/demo_spec.json`` so that re-runs are skipped.
* ``write_demo_photos``: a few colour photos with drawn faces for the predict stage.
* ``main``: the ``fer-demo-data`` command (``python -m fer_pipeline.demo``).

OpenCV is imported inside the functions that encode images.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fer_pipeline.core.classes import (
    CLASSES,
    FER2013_TEST_COUNTS,
    FER2013_TRAIN_COUNTS,
    NUM_CLASSES,
)
from fer_pipeline.files import write_json

from .faces import GENERATOR_VERSION, draw_face, draw_photo

SPEC_FILE = "demo_spec.json"
JPEG_QUALITY = 95
#: Smallest per-class count in a split (when the split is large enough for it).
MIN_PER_CLASS = 3

# --------------------------------------------------------------------------------------------
# The dataset on disk
# --------------------------------------------------------------------------------------------


def split_counts(total: int, weights: Sequence[int], minimum: int = MIN_PER_CLASS) -> list[int]:
    """``total`` split over classes in proportion to ``weights`` (largest remainder), each class
    getting at least ``min(minimum, total // K)``; the result sums to ``total``."""
    k = len(weights)
    if total < k:
        raise ValueError(f"need at least {k} images (one per class), got {total}")
    floor = min(minimum, total // k)
    rest = total - floor * k
    share = np.asarray(weights, dtype=np.float64) / float(np.sum(weights)) * rest
    counts = np.floor(share).astype(int)
    leftover = rest - int(counts.sum())
    order = np.argsort(-(share - counts), kind="stable")
    counts[order[:leftover]] += 1
    return (counts + floor).tolist()


def _spec(n_train: int, n_test: int, seed: int, image_size: int) -> dict:
    return {"generator_version": GENERATOR_VERSION, "n_train": int(n_train), "n_test": int(n_test),
            "seed": int(seed), "image_size": int(image_size)}


def _plan(n_train: int, n_test: int, seed: int) -> list[tuple[str, str, int, int]]:
    """Every image as (split folder, file prefix, id, label); ids unique across the dataset."""
    order_rng = np.random.default_rng([seed, 1])
    plan: list[tuple[str, str, int, int]] = []
    next_id = 0
    for folder, total, weights in (("train", n_train, FER2013_TRAIN_COUNTS), ("test", n_test, FER2013_TEST_COUNTS)):
        labels = np.repeat(np.arange(NUM_CLASSES), split_counts(total, weights))
        labels = labels[order_rng.permutation(labels.size)]
        # Test images alternate public/private within each class (stratified halves); classes
        # with an odd count give their extra image to public and private in turn (equal halves).
        odd_classes = np.cumsum(np.bincount(labels, minlength=NUM_CLASSES) % 2)
        seen_in_class = (odd_classes + 1) % 2
        for label in labels.tolist():
            if folder == "train":
                prefix = "Training"
            else:
                prefix = "PublicTest" if seen_in_class[label] % 2 == 0 else "PrivateTest"
            seen_in_class[label] += 1
            plan.append((folder, prefix, next_id, label))
            next_id += 1
    return plan


def _summary(root: Path, spec: dict, plan: list[tuple[str, str, int, int]]) -> dict:
    counts = {folder: {name: 0 for name in CLASSES} for folder in ("train", "test")}
    prefixes: dict[str, int] = {"Training": 0, "PublicTest": 0, "PrivateTest": 0}
    for folder, prefix, _, label in plan:
        counts[folder][CLASSES[label]] += 1
        prefixes[prefix] += 1
    return {"root": str(root), **spec, "counts": counts, "prefix_counts": prefixes}


def _stored_summary(root: Path, spec: dict) -> dict | None:
    """The stored summary when ``root`` holds a complete dataset made with ``spec``, else None."""
    spec_path = root / SPEC_FILE
    if not spec_path.is_file():
        return None
    try:
        stored = json.loads(spec_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if {key: stored.get(key) for key in spec} != spec:
        return None
    for folder, by_class in stored.get("counts", {}).items():  # cheap check that no file went missing
        for name, expected in by_class.items():
            if sum(1 for _ in (root / folder / name).glob("*.jpg")) != expected:
                return None
    stored["root"] = str(root)
    return stored


def generate_demo_dataset(
    root: str | Path,
    n_train: int = 2800,
    n_test: int = 700,
    seed: int = 0,
    image_size: int = 48,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Write a synthetic FER2013-layout dataset under ``root`` and return its summary.

    Summary: ``{"root", "generator_version", "n_train", "n_test", "seed", "image_size",
    "counts": {split: {class: n}}, "prefix_counts": {prefix: n}, "generated": bool}``. When
    ``root/demo_spec.json`` already describes the same arguments (and the files are there) and
    ``overwrite`` is False, nothing is written and the stored summary comes back
    (``generated`` False). Existing ``train/`` and ``test/`` folders are only replaced when they
    belong to a demo dataset (a ``demo_spec.json`` is present) or ``overwrite`` is True.
    """
    import cv2

    root = Path(root)
    spec = _spec(n_train, n_test, seed, image_size)
    if not overwrite:
        stored = _stored_summary(root, spec)
        if stored is not None:
            return {**stored, "generated": False}
    plan = _plan(n_train, n_test, seed)  # validates the counts before anything is deleted

    existing = [root / folder for folder in ("train", "test") if (root / folder).exists()]
    if existing and not overwrite and not (root / SPEC_FILE).is_file():
        raise FileExistsError(f"{root} already holds {', '.join(p.name for p in existing)} that is not "
                              "a demo dataset; pass overwrite=True to replace it")
    (root / SPEC_FILE).unlink(missing_ok=True)  # written last: its presence means "complete"
    for path in existing:
        shutil.rmtree(path)
    for folder in ("train", "test"):
        for name in CLASSES:
            (root / folder / name).mkdir(parents=True, exist_ok=True)

    iterator = plan
    if progress:
        try:
            from tqdm.auto import tqdm

            iterator = tqdm(plan, desc="demo faces", unit="img", leave=False)
        except ImportError:
            pass
    started = time.perf_counter()
    for folder, prefix, image_id, label in iterator:
        face = draw_face(label, np.random.default_rng([seed, 2, image_id]), size=image_size)
        ok, encoded = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for image {image_id}")
        (root / folder / CLASSES[label] / f"{prefix}_{image_id}.jpg").write_bytes(encoded.tobytes())

    summary = _summary(root, spec, plan)
    stored = {key: value for key, value in summary.items() if key != "root"}
    write_json(root / SPEC_FILE, stored)
    return {**summary, "generated": True, "seconds": round(time.perf_counter() - started, 3)}


def write_demo_photos(folder: str | os.PathLike, n_photos: int = 6, seed: int = 0) -> list[Path]:
    """Sample inputs for the predict stage: ``n_photos`` colour JPEG/PNG photos with one or two
    drawn faces each, plus one photo with no face (listed as such by predict). Deterministic;
    existing files of the same name are overwritten, other files in ``folder`` are left alone."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(n_photos):
        rng = np.random.default_rng([seed, 3, index])
        width, height = 480, 360
        count = 1 + index % 2
        side = int(rng.integers(110, 150))
        faces = []
        for slot in range(count):
            x = int(slot * width / count + rng.integers(10, width / count - side - 10))
            y = int(rng.integers(20, height - side - 20))
            faces.append((int(rng.integers(len(CLASSES))), (x, y, side, side)))
        photo = draw_photo(faces, size=(width, height), rng=rng)
        suffix = ".jpg" if index % 2 == 0 else ".png"
        path = folder / f"demo_photo_{index}{suffix}"
        cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
        written.append(path)
    blank = draw_photo([], size=(320, 240), rng=np.random.default_rng([seed, 4]))
    path = folder / "demo_no_face.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(blank, cv2.COLOR_RGB2BGR))
    written.append(path)
    return written


def write_demo_clip(path: str | os.PathLike, frames: int, fps: float = 25.0,
                    size: tuple[int, int] = (640, 480)) -> Path:
    """A demo clip (the video benchmarks'): two drawn faces, the left one drifting right and down (2 px, 1 px a frame,
    bouncing back), the right one still, camera noise redrawn every frame; MJPG AVI."""
    import cv2

    rng = np.random.default_rng(0)
    background = draw_photo([(4, (380, 150, 130, 130))], size=size, rng=rng)
    face = draw_photo([(3, (20, 20, 140, 140))], size=(180, 200), rng=rng)
    path = Path(path)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for index in range(frames):
        step = index % 60 if index % 120 < 60 else 60 - index % 60
        frame = background.copy()
        x, y = 60 + 2 * step, 110 + step
        frame[y:y + 200, x:x + 180] = face
        noise = rng.normal(0, 2.0, frame.shape)
        writer.write(cv2.cvtColor(np.clip(frame + noise, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``fer-demo-data OUT [--n-train N] [--n-test N] [--seed S] [--overwrite]``."""
    parser = argparse.ArgumentParser(
        prog="fer-demo-data",
        description="Write a synthetic face-expression dataset in FER2013's folder layout.",
    )
    parser.add_argument("out", type=Path, help="output folder (gets train/, test/, demo_spec.json)")
    parser.add_argument("--n-train", type=int, default=2800, help="training images (default 2800)")
    parser.add_argument("--n-test", type=int, default=700, help="test images, half public half private (default 700)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--image-size", type=int, default=48, help="side in pixels (default 48)")
    parser.add_argument("--overwrite", action="store_true", help="regenerate even if an identical dataset exists")
    args = parser.parse_args(argv)
    summary = generate_demo_dataset(args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed,
                                    image_size=args.image_size, overwrite=args.overwrite)
    state = "wrote" if summary["generated"] else "kept existing"
    print(f"{state} demo dataset at {summary['root']} (seed {summary['seed']})")
    for folder, by_class in summary["counts"].items():
        print(f"  {folder:5s} " + "  ".join(f"{name}={n}" for name, n in by_class.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
