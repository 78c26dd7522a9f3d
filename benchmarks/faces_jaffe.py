"""Face detectors x alignment on real photos: JAFFE and harder versions of it, one classifier.

JAFFE (213 grey 256x256 frontal photos of 10 posers, the label in the file name, read with the
external sets' own listing: ``core.evaluation.external_listing``) and variants made from it in
memory, never written anywhere but a temporary folder:

* ``original``: the photo as read.
* ``rot+15``, ``rot-15``, ``rot+30``, ``rot-30``: rotated about its centre by that many degrees
  (+ = counter-clockwise, OpenCV's sense), on a canvas grown to hold the whole rotated frame,
  the corners filled by replicating the border (``BORDER_REPLICATE``).
* ``framed``: the photo as it is (256x256, the face about 150 px) pasted at a random place (seeded)
  into a 1280x960 frame of smooth grey texture with noise (``background``): a large frame with a
  face both detectors find, for the speed on large photos at equal work.
* ``small``: the photo scaled to 1/3 (85x85 px, INTER_AREA; the face about 50 px) and pasted at
  a random place (seeded) into a 1280x960 frame of smooth grey texture with noise
  (``background``): a face at about 5 % of the frame's shorter side.
* ``blur``: Gaussian blur, sigma 3 px (the face is about 150 px wide).
* ``dim``: brightness scaled to 25 % plus Gaussian noise of sigma 3 grey levels.

Each photo's true face is the mean of the Haar and the YuNet box found at full resolution on the
original (they agree on all 213 photos: IoU 0.70 at least), carried through the variant's geometry
(its centre mapped, its size scaled). Per detector cell (``cells``) and variant, each photo goes
through the project's own path, ``core.faces.crops.find_faces``; its largest face is kept (as the
external sets do); the photo counts as ``found`` when that face's box overlaps the true face with
IoU >= 0.4, and the found crops go through ``core.faces.classify.classify_crops`` with the same
model for every cell; ``accuracy`` counts a photo not found as wrong.

Speed, the alternatives timed side by side in interleaved rounds (the best round reported, since the
machine may be shared): ``find_faces`` photos/s on the 256x256 originals and on the 1280x960
``framed`` and ``small`` frames; ``fer-predict`` end to end (its ``main``, in this process after a
warm-up run: model load, decode, detect, classify, CSV and annotated images) in photos/s and faces/s
on a temporary copy of the JAFFE photos and on temporary folders of ``framed`` and ``small`` frames
as JPEG, and in frames/s on a temporary 640x480 MJPG clip of JAFFE photos (each pasted on a
``background``, held 3 frames; the frames CSV and the annotated MP4 written). A cell fer-predict
cannot run (settings it has no flag for) shows "–".

    python benchmarks/faces_jaffe.py --model data/06_models/resnet34.pt
    python benchmarks/faces_jaffe.py --model m.pt --data ../shared/datasets/jaffe --markdown docs/faces_jaffe.md
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fer_pipeline.core.evaluation.external_listing import ExternalSet, list_external_set, model_classes
from fer_pipeline.core.faces.classify import classify_crops
from fer_pipeline.core.faces.crops import find_faces
from fer_pipeline.core.faces.detector import Box, Detector, FaceDetector, box_iou
from fer_pipeline.core.faces.images import load_image
from fer_pipeline.core.faces.yunet import YuNetDetector
from fer_pipeline.core.models import load_model

#: JAFFE as an external set (docs/stages/evaluate.md): the class is the two letters after the first dot.
JAFFE_SET = {
    "kind": "photos",
    "label_pattern": r"^[A-Z]+\.([A-Z]{2})\d",
    "class_map": {"AN": "angry", "DI": "disgust", "FE": "fear", "HA": "happy", "NE": "neutral", "SA": "sad",
                  "SU": "surprise"},
}
ROTATIONS = (15, -15, 30, -30)
SMALL_SCALE = 1 / 3
LARGE_FRAME = (1280, 960)  # (width, height)
BLUR_SIGMA = 3.0
DIM_FACTOR = 0.25
DIM_NOISE = 3.0
#: A detection is the true face when their boxes overlap this much (lenient: a box on anything
#: else overlaps the face by about 0; a rotated face's upright box is larger than the true one).
FOUND_IOU = 0.4
CLIP_HOLD = 3  # frames each photo is shown in the video clip
VARIANT_NAMES = ("original", *[f"rot{angle:+d}" for angle in ROTATIONS], "framed", "small", "blur", "dim")


# --------------------------------------------------------------------------------------------
# Photos and variants
# --------------------------------------------------------------------------------------------


def jaffe_listing(folder: str | Path, classes: Sequence[str]) -> list[tuple[str, Path, int]]:
    """(name, path, class index) of every JAFFE photo under ``folder``, labelled by its file name."""
    spec = ExternalSet.from_params("jaffe", {"path": str(folder), **JAFFE_SET})
    return list_external_set(spec, classes).files


@dataclass(frozen=True)
class Variant:
    """A photo made harder: the new image and the 2x3 affine map from the original's pixels to its."""

    image: np.ndarray
    matrix: np.ndarray


def rotated(image: np.ndarray, degrees: float) -> Variant:
    """``image`` rotated about its centre (+ = counter-clockwise) on a canvas holding the whole rotated
    frame, the corners filled by replicating the border."""
    import cv2

    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_width, new_height = int(round(width * cos + height * sin)), int(round(width * sin + height * cos))
    matrix[:, 2] += (new_width / 2 - width / 2, new_height / 2 - height / 2)
    out = cv2.warpAffine(image, matrix, (new_width, new_height), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return Variant(out, matrix)


def background(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A (height, width, 3) uint8 frame of ``size`` = (width, height): grey 60-200 varying smoothly
    (a 6x8 random grid, bicubic) plus per-pixel noise of sigma 4, grey like JAFFE."""
    import cv2

    width, height = size
    coarse = rng.uniform(60, 200, (6, 8)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    grey = np.clip(smooth + rng.normal(0, 4.0, smooth.shape), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def framed(image: np.ndarray, rng: np.random.Generator, scale: float = 1.0,
           frame: tuple[int, int] = LARGE_FRAME) -> Variant:
    """``image`` scaled by ``scale`` (INTER_AREA) and pasted whole at a random place of a
    ``background`` frame of ``frame`` = (width, height)."""
    import cv2

    height, width = image.shape[:2]
    small = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    out = background(frame, rng)
    x = int(rng.integers(0, frame[0] - small.shape[1] + 1))
    y = int(rng.integers(0, frame[1] - small.shape[0] + 1))
    out[y:y + small.shape[0], x:x + small.shape[1]] = small
    matrix = np.array([[small.shape[1] / width, 0.0, x], [0.0, small.shape[0] / height, y]])
    return Variant(out, matrix)


def same_frame(image: np.ndarray) -> Variant:
    return Variant(image, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))


def blurred(image: np.ndarray, sigma: float = BLUR_SIGMA) -> Variant:
    import cv2

    return same_frame(cv2.GaussianBlur(image, (0, 0), sigma))


def dimmed(image: np.ndarray, rng: np.random.Generator, factor: float = DIM_FACTOR,
           noise: float = DIM_NOISE) -> Variant:
    """Brightness x ``factor`` plus Gaussian noise of sigma ``noise`` grey levels."""
    out = image.astype(np.float32) * factor + rng.normal(0, noise, image.shape)
    return same_frame(np.clip(out + 0.5, 0, 255).astype(np.uint8))


def make_variant(name: str, image: np.ndarray, rng: np.random.Generator) -> Variant:
    """The variant ``name`` (``VARIANT_NAMES``) of ``image``."""
    if name == "original":
        return same_frame(image)
    if name.startswith("rot"):
        return rotated(image, float(name[3:]))
    makers: dict[str, Callable[[], Variant]] = {
        "framed": lambda: framed(image, rng), "small": lambda: framed(image, rng, SMALL_SCALE),
        "blur": lambda: blurred(image), "dim": lambda: dimmed(image, rng)}
    return makers[name]()


def mapped_box(box: Sequence[float], matrix: np.ndarray) -> tuple[float, float, float, float]:
    """A face box (x, y, w, h) of the original carried into a variant: its centre mapped by
    ``matrix``, its sides scaled by the map's scale (a rotation keeps them)."""
    x, y, w, h = box
    cx, cy = matrix[:, :2] @ np.array([x + w / 2, y + h / 2]) + matrix[:, 2]
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    return cx - w * scale / 2, cy - h * scale / 2, w * scale, h * scale


def reference_box(image: np.ndarray, detectors: Sequence[Detector]) -> tuple[float, ...] | None:
    """The true face of an original photo: the mean of each detector's largest box (None: none found)."""
    boxes = [largest(detector.detect(image)) for detector in detectors]
    found = [box for box in boxes if box is not None]
    return tuple(np.mean(found, axis=0).tolist()) if found else None


def largest(boxes: Sequence[Box]) -> Box | None:
    return max(boxes, key=lambda box: box[2] * box[3], default=None)


# --------------------------------------------------------------------------------------------
# Detector cells and scoring
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One column of the table: a detector and whether crops are aligned."""

    name: str
    detector: Detector
    align: bool = False
    #: the ``fer-predict`` flags that give this cell (None: not a fer-predict setting)
    predict_flags: tuple[str, ...] | None = None


def cells() -> list[Cell]:
    """Haar (the default before issue 29, settings unchanged), YuNet with the settings it had when
    issue 29 was measured and with its defaults now, each YuNet with and without alignment (Haar has
    no landmarks: aligned, its crops are the same). Each cell's fer-predict flags say it in full, so
    the table does not move with fer-predict's defaults."""
    before = YuNetDetector(score_threshold=0.7, min_size_fraction=0.06, detect_max_side=320, retry_max_side=None)
    now = YuNetDetector()
    return [Cell("haar", FaceDetector(), predict_flags=("--detector", "haar", "--no-align")),
            Cell("yunet (before)", before),
            Cell("yunet (before) + align", before, align=True, predict_flags=(
                "--detector", "yunet", "--align", "--min-score", "0.7", "--min-face", "0.06",
                "--detect-retry-max-side", "0")),
            Cell("yunet", now, predict_flags=("--detector", "yunet", "--no-align")),
            Cell("yunet + align", now, align=True, predict_flags=("--detector", "yunet", "--align"))]


@dataclass
class Score:
    found: np.ndarray  # (N,) bool
    correct: np.ndarray  # (N,) bool, False where not found

    @property
    def found_pct(self) -> float:
        return 100.0 * float(self.found.mean())

    @property
    def accuracy_pct(self) -> float:
        return 100.0 * float(self.correct.mean())


def largest_face(image: np.ndarray, cell: Cell) -> tuple[Box | None, np.ndarray | None]:
    """``find_faces``' largest face of ``image`` under ``cell``: (box, 48x48 crop), or (None, None)."""
    found = find_faces(image, cell.detector, whole_image_max_side=0, align=cell.align)
    if not found.boxes:
        return None, None
    index = int(np.argmax([w * h for _x, _y, w, h in found.boxes]))
    return found.boxes[index], found.crops[index]


def score_cell(images: Sequence[np.ndarray], truths: Sequence[Sequence[float]], labels: np.ndarray, cell: Cell,
               model, config: dict) -> Score:
    """Faces found (largest face on the true face) and accuracy (not found = wrong) of ``cell``."""
    found = np.zeros(len(images), bool)
    crops = []
    for index, (image, truth) in enumerate(zip(images, truths, strict=True)):
        box, crop = largest_face(image, cell)
        if box is not None and box_iou(box, truth) >= FOUND_IOU:
            found[index] = True
            crops.append(crop)
    correct = np.zeros(len(images), bool)
    if crops:
        predicted = classify_crops(model, np.stack(crops), config, device="cpu").argmax(axis=1)
        correct[found] = predicted == labels[found]
    return Score(found, correct)


@dataclass
class Photos:
    names: list[str]
    paths: list[Path]
    labels: np.ndarray
    originals: list[np.ndarray]
    truths: list[tuple[float, ...]]
    variants: dict[str, list[Variant]] = field(default_factory=dict)


def read_photos(folder: Path, classes: Sequence[str], limit: int | None, seed: int) -> Photos:
    """The JAFFE photos (the first ``limit``), their true faces and every variant (seeded)."""
    files = jaffe_listing(folder, classes)[:limit]
    originals = [load_image(path) for _name, path, _label in files]
    references = [FaceDetector(detect_max_side=None), YuNetDetector(detect_max_side=None)]
    truths = [reference_box(image, references) for image in originals]
    missing = [name for (name, *_), truth in zip(files, truths, strict=True) if truth is None]
    if missing:
        raise SystemExit(f"no reference face in {len(missing)} photos ({', '.join(missing[:5])}): not JAFFE?")
    rng = np.random.default_rng(seed)
    variants = {name: [make_variant(name, image, rng) for image in originals] for name in VARIANT_NAMES}
    labels = np.array([label for *_, label in files])
    return Photos([name for name, *_ in files], [path for _, path, _ in files], labels, originals, truths, variants)


def accuracy_table(photos: Photos, grid: Sequence[Cell], model, config: dict) -> str:
    header = "| variant | " + " | ".join(cell.name for cell in grid) + " |"
    lines = [header, "|---|" + "---:|" * len(grid)]
    for name, variants in photos.variants.items():
        truths = [mapped_box(truth, variant.matrix) for truth, variant in zip(photos.truths, variants, strict=True)]
        scores = [score_cell([v.image for v in variants], truths, photos.labels, cell, model, config) for cell in grid]
        lines.append(f"| {name} | " + " | ".join(f"{s.found_pct:.1f} / {s.accuracy_pct:.1f}" for s in scores) + " |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Speed
# --------------------------------------------------------------------------------------------


def best_rounds(jobs: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Each job's least seconds over ``rounds`` rounds, the jobs interleaved within each round so
    that a busy spell of the machine does not land on one alternative only."""
    best = dict.fromkeys(jobs, float("inf"))
    for _ in range(rounds):
        for name, job in jobs.items():
            best[name] = min(best[name], job())
    return best


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def detection_speed(photos: Photos, grid: Sequence[Cell], rounds: int) -> list[str]:
    """find_faces photos/s per cell on the originals and on the ``framed`` and ``small`` frames."""
    sets = {"JAFFE 256x256": photos.originals, **{f"{name} 1280x960": [v.image for v in photos.variants[name]]
                                                  for name in ("framed", "small")}}
    lines = []
    for label, images in sets.items():
        jobs = {cell.name: (lambda c=cell, i=images: timed(lambda: [largest_face(image, c) for image in i]))
                for cell in grid}
        seconds = best_rounds(jobs, rounds)
        lines.append(f"| find_faces photos/s, {label} | "
                     + " | ".join(f"{len(images) / seconds[c.name]:.1f}" for c in grid) + " |")
        print(lines[-1], flush=True)
    return lines


def run_predict(folder: Path, model_path: str, flags: Sequence[str], output: Path) -> int:
    """``fer-predict`` (its ``main``) on ``folder``; the faces it wrote (photos' and videos' CSV rows)."""
    import csv

    from fer_pipeline.commands.predict import main as fer_predict

    argv = [str(folder), "--model", model_path, "--output", str(output), "--device", "cpu", "--quiet", *flags]
    with contextlib.redirect_stdout(io.StringIO()):
        code = fer_predict(argv)
    if code != 0:
        raise SystemExit(f"fer-predict {' '.join(argv)} exited {code}")
    faces = 0
    for table in [output / "predictions.csv", *sorted((output / "videos").glob("*.csv"))]:
        if table.is_file():
            with open(table, newline="", encoding="utf-8") as handle:
                rows = csv.DictReader(handle)
                faces += sum(row.get("status", "face") == "face" and row["emotion"] != "" for row in rows)
    return faces


def copy_files(paths: Sequence[Path], folder: Path) -> Path:
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        shutil.copy(path, folder / path.name)
    return folder


def write_frames(images: Sequence[np.ndarray], folder: Path) -> Path:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        cv2.imwrite(str(folder / f"frame_{index:03d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def predict_speed(photos: Photos, grid: Sequence[Cell], model_path: str, rounds: int,
                  tmp: Path) -> list[str]:
    """fer-predict photos/s and faces/s per cell that has fer-predict flags."""
    runnable = [cell for cell in grid if cell.predict_flags is not None]
    sets = {"JAFFE 256x256": (copy_files(photos.paths, tmp / "jaffe"), len(photos.names)),
            **{f"{name} 1280x960": (write_frames([v.image for v in photos.variants[name]], tmp / name),
                                    len(photos.names)) for name in ("framed", "small")}}
    lines = []
    for label, (inputs, count) in sets.items():
        faces: dict[str, int] = {}

        def job(cell: Cell, inputs: Path = inputs) -> float:
            start = time.perf_counter()
            faces[cell.name] = run_predict(inputs, model_path, cell.predict_flags, tmp / "out")
            return time.perf_counter() - start

        job(runnable[0])  # warm-up: imports, first model load
        seconds = best_rounds({cell.name: (lambda c=cell: job(c)) for cell in runnable}, rounds)
        lines.append(f"| fer-predict photos/s, {label} | " + " | ".join(
            f"{count / seconds[c.name]:.1f}" if c.name in seconds else "–" for c in grid) + " |")
        lines.append(f"| fer-predict faces/s, {label} | " + " | ".join(
            f"{faces[c.name] / seconds[c.name]:.1f}" if c.name in seconds else "–" for c in grid) + " |")
        print("\n".join(lines[-2:]), flush=True)
    return lines


def write_clip(images: Sequence[np.ndarray], path: Path, hold: int = CLIP_HOLD,
               size: tuple[int, int] = (640, 480), seed: int = 0) -> Path:
    """A 25 fps MJPG clip: each photo pasted at the centre of a 640x480 ``background``, ``hold`` frames each."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    frame = background(size, np.random.default_rng(seed))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, size)
    for image in images:
        y, x = (size[1] - image.shape[0]) // 2, (size[0] - image.shape[1]) // 2
        frame[y:y + image.shape[0], x:x + image.shape[1]] = image
        for _ in range(hold):
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def video_speed(photos: Photos, grid: Sequence[Cell], model_path: str, rounds: int, frames: int,
                tmp: Path) -> list[str]:
    """fer-predict frames/s per cell on a clip of JAFFE photos, its frames CSV and annotated MP4 written."""
    runnable = [cell for cell in grid if cell.predict_flags is not None]
    shown = photos.originals[:max(1, frames // CLIP_HOLD)]
    clip = write_clip(shown, tmp / "video" / "clip.avi")

    def job(cell: Cell) -> float:
        return timed(lambda: run_predict(clip.parent, model_path, cell.predict_flags, tmp / "out"))

    job(runnable[0])  # warm-up
    seconds = best_rounds({cell.name: (lambda c=cell: job(c)) for cell in runnable}, rounds)
    n_frames = CLIP_HOLD * len(shown)
    line = ("| fer-predict frames/s, 640x480 video | "
            + " | ".join(f"{n_frames / seconds[c.name]:.1f}" if c.name in seconds else "–" for c in grid) + " |")
    print(line, flush=True)
    return [line]


# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the classifier's model file (core.models.save_model)")
    parser.add_argument("--data", default="../shared/datasets/jaffe", help="the JAFFE folder")
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos (a quick look)")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds (the best is reported)")
    parser.add_argument("--frames", type=int, default=120, help="frames of the video clip")
    parser.add_argument("--no-speed", action="store_true", help="the accuracy table only")
    parser.add_argument("--seed", type=int, default=0, help="seed of the small-face placement and dim noise")
    parser.add_argument("--markdown", help="also write the tables to this file")
    args = parser.parse_args(argv)
    command = " ".join(["python benchmarks/faces_jaffe.py", *(sys.argv[1:] if argv is None else argv)])

    model, config = load_model(args.model)
    photos = read_photos(Path(args.data), model_classes(config), args.limit, args.seed)
    grid = cells()
    print(f"model: {args.model}; {len(photos.names)} JAFFE photos; torch threads {torch.get_num_threads()}\n")
    text = [f"Written by `{command}` ({len(photos.names)} JAFFE photos, torch threads {torch.get_num_threads()}).",
            "", "Faces found % / accuracy % (a photo without the true face found counts as wrong)", "",
            accuracy_table(photos, grid, model, config)]
    if not args.no_speed:
        with tempfile.TemporaryDirectory() as tmp:
            lines = ["| speed | " + " | ".join(cell.name for cell in grid) + " |", "|---|" + "---:|" * len(grid)]
            print("\n".join(lines), flush=True)
            lines += detection_speed(photos, grid, args.rounds)
            lines += predict_speed(photos, grid, args.model, args.rounds, Path(tmp))
            lines += video_speed(photos, grid, args.model, args.rounds, args.frames, Path(tmp))
        text += ["", f"Speed (best of {args.rounds} interleaved rounds)", "", "\n".join(lines)]
    report = "\n".join(text)
    print("\n" + report)
    if args.markdown:
        Path(args.markdown).write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
