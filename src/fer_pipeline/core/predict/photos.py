"""Photos -> faces -> emotions (``EmotionRecognizer``), with a CSV and annotated images.

Everything runs locally: YuNet ships inside the package (``core/faces/models``) and the Haar cascade
inside opencv-python (``cv2.data``), nothing is downloaded. cv2 is imported lazily so ``core`` stays
importable where OpenCV is missing.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fer_pipeline.core.faces.annotate import annotate, preview_image
from fer_pipeline.core.faces.crops import DETECTION_COLUMNS, FoundFaces
from fer_pipeline.core.faces.images import MAX_PIXELS, UnreadableImageError, load_image
from fer_pipeline.core.faces.recognizer import EmotionRecognizer
from fer_pipeline.core.predict.inputs import name_list, scan_media
from fer_pipeline.core.predict.workers import map_ordered
from fer_pipeline.files import atomic_path

log = logging.getLogger(__name__)

CSV_STATUSES: tuple[str, ...] = ("face", "no_face", "unreadable")


@dataclass
class PredictionResult:
    """Outcome of ``predict_photos``.

    ``files``: every input file in processing order. ``rows``: one dict per face (file,
    face_index, x, y, w, h, box_source, emotion, confidence, prob_<class>..., then the detector's
    score and landmarks, ``DETECTION_COLUMNS``, None for Haar). ``no_face``:
    readable files without a detected face. ``unreadable``: {file, reason}. ``annotated``: unique name (file
    stem; ``stem_2``, ``stem_3``, ... for the second, third ... file of that stem, in file order, as
    two ``face.jpg`` in different subfolders) -> RGB uint8 preview with boxes and labels, for
    every readable file. ``file`` is each file's path as found (a folder's files under it).
    """

    classes: tuple[str, ...]
    files: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)
    unreadable: list[dict[str, str]] = field(default_factory=list)
    annotated: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_faces(self) -> int:
        return len(self.rows)

    @property
    def num_readable(self) -> int:
        return len(self.files) - len(self.unreadable)

    def csv_rows(self) -> list[dict[str, Any]]:
        """One row per face, plus one per no-face and per unreadable file, in file order."""
        faces_by_file: dict[str, list[dict[str, Any]]] = {}
        for row in self.rows:
            faces_by_file.setdefault(row["file"], []).append(row)
        no_face = set(self.no_face)
        reasons = {item["file"]: item["reason"] for item in self.unreadable}
        columns = csv_columns(self.classes)
        rows: list[dict[str, Any]] = []
        for file in self.files:
            if file in faces_by_file:
                for face in faces_by_file[file]:
                    rows.append({**dict.fromkeys(columns, ""), **face, "status": "face"})
            elif file in no_face:
                rows.append({**dict.fromkeys(columns, ""), "file": file, "status": "no_face"})
            elif file in reasons:
                rows.append(
                    {**dict.fromkeys(columns, ""), "file": file, "status": "unreadable", "reason": reasons[file]}
                )
        return rows


def csv_columns(classes: Sequence[str]) -> list[str]:
    return [
        "file", "status", "face_index", "x", "y", "w", "h", "box_source", "emotion", "confidence",
        *[f"prob_{c}" for c in classes], "reason", *DETECTION_COLUMNS,
    ]


def result_table(result: PredictionResult):  # -> pandas.DataFrame (pandas imported lazily)
    """``result.csv_rows()`` as a DataFrame with the ``csv_columns`` order: integer box columns
    (nullable Int64), float confidence / probabilities / score / landmarks (NaN off face rows and
    where the detector gave none), "" in text columns."""
    import pandas as pd

    columns = csv_columns(result.classes)
    table = pd.DataFrame(result.csv_rows(), columns=columns)
    for column in ("face_index", "x", "y", "w", "h"):
        table[column] = pd.to_numeric(table[column].replace("", None)).astype("Int64")
    for column in ("confidence", *[f"prob_{c}" for c in result.classes], *DETECTION_COLUMNS):
        table[column] = pd.to_numeric(table[column].replace("", None)).astype("float64")
    return table


def collect_image_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The image files among ``paths``, by ``core.predict.inputs.scan_media``: named files as given,
    folders searched recursively (sorted; hidden files and folders left out) for the formats the
    decoder reads. What is left out (a folder's other files, videos: ``predict_video`` reads
    those) is logged as a warning. Raises FileNotFoundError for a path that does not exist.
    Duplicates are dropped.
    """
    media = scan_media(paths)
    for line in media.report():
        log.warning("%s", line)
    if media.videos:
        log.warning("left %d video(s) to predict_video: %s", len(media.videos), name_list(media.videos))
    return media.images


def unique_name(stem: str, taken: Container[str]) -> str:
    """``stem``, or ``stem_2``, ``stem_3``, ... : the first not in ``taken`` (two inputs named
    ``a/face.jpg`` and ``b/face.jpg`` must not overwrite each other's outputs)."""
    name, counter = stem, 2
    while name in taken:
        name, counter = f"{stem}_{counter}", counter + 1
    return name


@dataclass(frozen=True)
class _PhotoFaces:
    """What a decode+detect thread hands back for one file (``_read_photo``)."""

    name: str
    found: FoundFaces | None = None
    preview: np.ndarray | None = None
    preview_scale: float = 1.0
    reason: str = ""


def _read_photo(file: Path, recognizer: EmotionRecognizer, max_pixels: int | None = MAX_PIXELS) -> _PhotoFaces:
    """Decode one file, find its faces and keep only a preview-sized copy of it (full-resolution
    photos would pile up in memory over a big folder). Runs in a worker thread. An image over
    ``max_pixels`` is refused from its header, before decoding allocates it: unreadable."""
    name = str(file)
    try:
        image = load_image(file, max_pixels=max_pixels)
    except UnreadableImageError as error:
        return _PhotoFaces(name, reason=str(error))
    found = recognizer.find_faces(image)
    preview, scale = preview_image(image)
    return _PhotoFaces(name, found, preview, scale)


def predict_photos(
    paths: Iterable[str | os.PathLike],
    recognizer: EmotionRecognizer,
    progress: bool = True,
    workers: int | None = None,
    max_pixels: int | None = MAX_PIXELS,
) -> PredictionResult:
    """Detect faces in photos (files or folders) and classify each face's emotion with ``recognizer``.

    Each readable image goes through ``recognizer.find_faces`` (its detector, margin and
    whole-image rule), decoded and searched by ``workers`` threads (``map_ordered``; results in
    input order); unreadable files (and images over ``max_pixels``, from their header) are
    recorded, not raised; all faces go through one batched ``recognizer.label`` call. Raises
    FileNotFoundError for a missing input path.
    """
    files = collect_image_files(paths)
    result = PredictionResult(classes=recognizer.classes, files=[str(f) for f in files])

    def read(file: Path) -> _PhotoFaces:
        return _read_photo(file, recognizer, max_pixels)

    photos: Iterable[_PhotoFaces] = map_ordered(read, files, workers)
    if progress:
        try:
            from tqdm.auto import tqdm

            photos = tqdm(photos, total=len(files), desc="detect faces", unit="image")
        except ImportError:  # pragma: no cover
            pass

    readable: list[_PhotoFaces] = []
    for photo in photos:
        if photo.found is None:
            result.unreadable.append({"file": photo.name, "reason": photo.reason})
            continue
        if not photo.found.boxes:
            result.no_face.append(photo.name)
        readable.append(photo)

    for photo, faces in zip(readable, recognizer.label([photo.found for photo in readable]), strict=True):
        rows = [{"file": photo.name, "face_index": index, **face.row()} for index, face in enumerate(faces)]
        result.rows.extend(rows)
        key = unique_name(Path(photo.name).stem, result.annotated)
        scale = photo.preview_scale
        scaled = [{**row, **{k: row[k] * scale for k in ("x", "y", "w", "h")}} for row in rows]
        result.annotated[key] = annotate(photo.preview, scaled, max_side=None)
    return result


def write_outputs(result: PredictionResult, output_dir: str | os.PathLike,
                  workers: int | None = None) -> dict[str, Any]:
    """Write ``predictions.csv`` (status column: face / no_face / unreadable) and
    ``annotated/<name>.png``, the PNGs encoded by ``workers`` threads (``map_ordered``; OpenCV
    releases the GIL while it encodes, and encoding a 1280x960 PNG took longer than finding and
    classifying its faces). Returns {"csv": Path, "annotated_dir": Path, "annotated": [Path]}."""
    output_dir = Path(output_dir)
    annotated_dir = output_dir / "annotated"
    annotated_dir.mkdir(parents=True, exist_ok=True)
    csv_path = output_dir / "predictions.csv"
    columns = csv_columns(result.classes)
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in result.csv_rows():
            writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    items = [(annotated_dir / f"{name}.png", image) for name, image in result.annotated.items()]
    written = list(map_ordered(_write_png, items, workers))
    return {"csv": csv_path, "annotated_dir": annotated_dir, "annotated": written}


def _write_png(item: tuple[Path, np.ndarray]) -> Path:
    """One annotated RGB image -> its PNG file; runs in a worker thread."""
    import cv2

    path, image = item
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover
        raise RuntimeError(f"could not encode {path}")
    encoded.tofile(path)  # tofile: works with non-ASCII paths, unlike cv2.imwrite on Windows
    return path
