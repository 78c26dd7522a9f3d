"""Photos -> faces (OpenCV Haar cascade) -> emotions, with a CSV and annotated images.

Everything runs locally: the Haar cascade ships inside opencv-python (``cv2.data``), nothing is
downloaded. cv2 is imported lazily so ``core`` stays importable where OpenCV is missing.
"""

from __future__ import annotations

import csv
import io
import os
import threading
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_pipeline.core.classes import CLASSES, IMAGE_SIZE
from fer_pipeline.core.evaluation.metrics import softmax
from fer_pipeline.core.inference import predict_logits
from fer_pipeline.core.ingestion.decode import sniff_format, truncation

#: Extensions picked up when a folder is given (case-insensitive). Files named explicitly are
#: tried whatever their extension.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

#: Colour (RGB) of each emotion's box in the annotated images.
EMOTION_COLORS: dict[str, tuple[int, int, int]] = {
    "angry": (230, 25, 45),
    "disgust": (60, 180, 75),
    "fear": (145, 30, 180),
    "happy": (255, 200, 0),
    "neutral": (170, 170, 170),
    "sad": (0, 110, 230),
    "surprise": (245, 130, 50),
}

#: Annotated images are downscaled to at most this side: they are previews, and keeping
#: full-resolution copies of every photo in memory does not scale to big folders.
ANNOTATED_MAX_SIDE = 1280

CSV_STATUSES: tuple[str, ...] = ("face", "no_face", "unreadable")

#: Images up to this size with no detected face are classified whole (already face crops).
WHOLE_IMAGE_MAX_SIDE = 100

#: The Haar cascade searches a copy of each image at most this long (``FaceDetector``).
DETECT_MAX_SIDE = 320
#: The frontal-face cascade's window: it finds no face smaller than this in the image it searches.
CASCADE_WINDOW = 24


class UnreadableImageError(ValueError):
    """The file is empty, truncated, corrupt, or not an image OpenCV can decode."""


class ImageTooLargeError(UnreadableImageError):
    """The image has more pixels than the caller allows (``decode_image(max_pixels=...)``)."""


# --------------------------------------------------------------------------------------------
# Images and faces
# --------------------------------------------------------------------------------------------


def load_image(path: str | os.PathLike) -> np.ndarray:
    """An image file -> RGB uint8 (H, W, 3): ``decode_image`` on the file's bytes.

    Reads with ``np.fromfile`` so non-ASCII paths work on every OS. Raises
    ``UnreadableImageError`` for empty, truncated, corrupt or non-image files.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise UnreadableImageError(f"cannot read file: {error.strerror or error}") from error
    if data.size == 0:
        raise UnreadableImageError("empty file (0 bytes)")
    return decode_image(data.tobytes())


def image_size(raw: bytes) -> tuple[int, int] | None:
    """(width, height) from the image's header, without decoding its pixels; None when Pillow
    cannot read the header. An image past Pillow's decompression-bomb ceiling (twice
    ``PIL.Image.MAX_IMAGE_PIXELS``, about 179 million pixels) is ``ImageTooLargeError``."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(raw)) as image:
                return image.size
        except Image.DecompressionBombError as error:
            raise ImageTooLargeError(f"over Pillow's decompression-bomb ceiling: {error}") from error
        except Exception:  # noqa: BLE001 - a header Pillow cannot parse: the decoder decides
            return None


def _check_pixel_count(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{width}x{height} = {width * height:,} pixels is over the limit of {max_pixels:,}"
        )


def decode_image(raw: bytes, max_pixels: int | None = None) -> np.ndarray:
    """Encoded image bytes (JPEG/PNG/BMP/WebP/TIFF; grey, colour, RGBA, 16-bit) -> RGB uint8 (H, W, 3).

    EXIF orientation is applied; transparent pixels are composited onto white. ``max_pixels``:
    refuse a larger image (``ImageTooLargeError``) from its header, before decoding allocates it.
    Raises ``UnreadableImageError`` for empty, truncated, corrupt or non-image bytes.
    """
    import cv2

    if not raw:
        raise UnreadableImageError("empty (0 bytes)")
    fmt = sniff_format(raw)
    if truncation(raw, fmt) is not None:
        end = "end-of-image marker" if fmt == "jpeg" else "IEND chunk"
        raise UnreadableImageError(f"truncated {fmt.upper()} (no {end})")
    size = image_size(raw) if max_pixels is not None else None
    if size is not None:
        _check_pixel_count(*size, max_pixels)
    data = np.frombuffer(raw, dtype=np.uint8)
    try:
        # IMREAD_COLOR: grey -> 3 channels, 16-bit -> 8-bit, EXIF orientation applied.
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as error:
        raise UnreadableImageError(f"OpenCV could not decode it: {error}") from error
    if bgr is None or bgr.size == 0:
        raise UnreadableImageError("not an image, or a corrupt/truncated one (OpenCV could not decode it)")
    if max_pixels is not None and size is None:  # a header Pillow could not read
        _check_pixel_count(bgr.shape[1], bgr.shape[0], max_pixels)

    if fmt in ("png", "webp", "tiff"):  # the formats that may carry alpha
        unchanged = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if unchanged is not None and unchanged.ndim == 3 and unchanged.shape[2] == 4:
            scale = 65535.0 if unchanged.dtype == np.uint16 else 255.0
            pixels = unchanged.astype(np.float32) / scale
            alpha = pixels[..., 3:4]
            composited = pixels[..., :3] * alpha + (1.0 - alpha)  # onto white
            bgr = np.clip(composited * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB (H,W,3) or grey (H,W) uint8 -> grey (H,W) uint8."""
    import cv2

    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


class FaceDetector:
    """Frontal-face detector: OpenCV's bundled Haar cascade (no download, CPU, fast).

    ``min_size=None`` scales the smallest face with the photo: 6% of the shorter side, at
    least 24 px (the cascade's own window), so group photos and close-ups both work without
    flooding large photos with tiny false positives.

    ``equalize_fallback``: when the plain grey image yields no face, try again on its
    histogram-equalised version (rescues dark / low-contrast photos). Equalising every image
    instead found fewer faces on the demo photos (75 vs 79 of 80) and about as many on real
    FER2013 faces (147 vs 144 of 200); plain-then-equalised found 78/80 and 151/200.

    ``detect_max_side``: the cascade runs on a copy whose longer side is at most this many
    pixels (INTER_AREA), and the boxes are mapped back to the full-resolution image, from
    which the crops are taken. The cascade's cost grows with the pixel count, so 320 px is
    about 2.2x faster than full resolution on 480x360 photos and far more on camera photos,
    and found the same faces on the benchmark photos (``benchmarks/bench_predict.py``).
    ``min_size_fraction`` is a fraction of the side, so it means the same at any scale; only
    the cascade's 24-px window floor grows with the downscale: the smallest face found is
    ``max(min_size_fraction x shorter side, 24 px x longer side / detect_max_side)``, e.g.
    36 px in a 480x360 photo and 7.5% of the width of a large photo. ``None`` (or 0)
    detects at full resolution, for group photos with very small faces. An explicit
    ``min_size`` is in full-resolution pixels and scaled with the image (at least 24).
    """

    CASCADE_FILE = "haarcascade_frontalface_default.xml"

    def __init__(
        self,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: tuple[int, int] | None = None,
        min_size_fraction: float = 0.06,
        equalize_fallback: bool = True,
        detect_max_side: int | None = DETECT_MAX_SIDE,
    ) -> None:
        import cv2

        if not hasattr(cv2, "CascadeClassifier"):
            # OpenCV 5 dropped the Haar cascades (class and bundled XML files) from the main wheel.
            raise RuntimeError(
                f"OpenCV {cv2.__version__} has no Haar cascade face detector (removed in OpenCV 5); "
                "install opencv-python-headless<5"
            )
        self._cascade_path = os.path.join(cv2.data.haarcascades, self.CASCADE_FILE)
        # One cascade per thread: detectMultiScale keeps the image's integral tables in the
        # classifier object, so threads sharing one would overwrite each other's.
        self._local = threading.local()
        self._load_cascade()  # fail here, in the caller's thread, when the file is unusable
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.min_size_fraction = min_size_fraction
        self.equalize_fallback = equalize_fallback
        if detect_max_side is not None and (detect_max_side < 0 or 0 < detect_max_side < CASCADE_WINDOW):
            raise ValueError(f"detect_max_side must be 0 or None (full resolution) or at least the cascade's "
                             f"{CASCADE_WINDOW}-px window, got {detect_max_side}")
        self.detect_max_side = detect_max_side or None

    def _load_cascade(self):  # -> cv2.CascadeClassifier
        import cv2

        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            cascade = cv2.CascadeClassifier(self._cascade_path)
            if cascade.empty():
                raise RuntimeError(f"could not load OpenCV's Haar cascade from {self._cascade_path}")
            self._local.cascade = cascade
        return cascade

    def detection_scale(self, shape: tuple[int, ...]) -> float:
        """Factor (<= 1) from an image of ``shape`` to the copy the cascade searches."""
        longest = max(shape[:2])
        if self.detect_max_side is None or longest <= self.detect_max_side:
            return 1.0
        return self.detect_max_side / longest

    def _min_size_for(self, gray: np.ndarray, scale: float = 1.0) -> tuple[int, int]:
        """Smallest box searched in ``gray`` (already scaled by ``scale``): an explicit ``min_size``
        is in full-resolution pixels, so it is scaled too; never under the 24-px window."""
        if self.min_size is not None:
            width, height = (max(CASCADE_WINDOW, round(side * scale)) for side in self.min_size[:2])
            return width, height
        side = max(CASCADE_WINDOW, int(round(min(gray.shape[:2]) * self.min_size_fraction)))
        return side, side

    def _run_cascade(self, gray: np.ndarray, scale: float = 1.0) -> list[tuple[int, int, int, int]]:
        boxes = self._load_cascade().detectMultiScale(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=self._min_size_for(gray, scale),
        )
        return [(int(x), int(y), int(w), int(h)) for x, y, w, h in np.asarray(boxes).reshape(-1, 4)]

    def detect(self, gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Face boxes (x, y, w, h) in pixels of ``gray`` (full resolution, whatever scale the
        cascade searched at), sorted left to right then top to bottom."""
        import cv2

        gray = to_gray(gray)
        scale = self.detection_scale(gray.shape)
        small = gray
        if scale < 1.0:
            size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
            small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        boxes = self._run_cascade(small, scale)
        if not boxes and self.equalize_fallback:
            boxes = self._run_cascade(cv2.equalizeHist(small), scale)
        if scale < 1.0:
            boxes = [_scale_box(box, gray.shape[1] / small.shape[1], gray.shape[0] / small.shape[0], gray.shape)
                     for box in boxes]
        return sorted(boxes)


def _scale_box(
    box: tuple[int, int, int, int], fx: float, fy: float, shape: tuple[int, ...]
) -> tuple[int, int, int, int]:
    """A box found on a resized copy -> the same box in the original image's pixels (per-axis
    factors, since rounding the copy's size changes the aspect slightly), clipped to the image."""
    x, y, w, h = box
    x0, y0 = round(x * fx), round(y * fy)
    x1, y1 = min(round((x + w) * fx), shape[1]), min(round((y + h) * fy), shape[0])
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes; 0 when they do not overlap."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def crop_faces(
    gray: np.ndarray,
    boxes: Sequence[tuple[int, int, int, int]],
    margin: float = 0.2,
    size: int = IMAGE_SIZE,
) -> np.ndarray:
    """Square face crops (F, size, size) uint8 around each box, ``margin`` x side on each side.

    The square is centred on the box. Where it runs past the image border it is clipped to
    the image and the missing part is filled by replicating the edge pixels, so the face stays
    centred and undistorted (FER2013 faces are centred). Resized with INTER_AREA.
    """
    import cv2

    gray = to_gray(gray)
    height, width = gray.shape
    crops = np.zeros((len(boxes), size, size), dtype=np.uint8)
    for index, (x, y, w, h) in enumerate(boxes):
        side = max(1, int(round(max(w, h) * (1.0 + 2.0 * margin))))
        x0 = int(round(x + w / 2.0 - side / 2.0))
        y0 = int(round(y + h / 2.0 - side / 2.0))
        x1, y1 = x0 + side, y0 + side
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if cx1 <= cx0 or cy1 <= cy0:
            raise ValueError(f"face box {(x, y, w, h)} lies outside the {width}x{height} image")
        window = gray[cy0:cy1, cx0:cx1]
        if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
            window = cv2.copyMakeBorder(
                window, cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1, borderType=cv2.BORDER_REPLICATE
            )
        crops[index] = cv2.resize(window, (size, size), interpolation=cv2.INTER_AREA)
    return crops


# --------------------------------------------------------------------------------------------
# One image -> its faces -> emotions (shared by fer-predict, the predict stage and serving)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FoundFaces:
    """The faces of one image: boxes (x, y, w, h) in its pixels, how they were found
    (``box_source``: ``detector``, the Haar cascade; ``whole_image``, a small image with no
    detection taken to be a face crop already; ``crop``, given as a ready 48x48 face, serving's
    ``pixels``), and the crops the classifier takes, (F, 48, 48) uint8."""

    boxes: list[tuple[int, int, int, int]]
    box_source: str
    crops: np.ndarray

    def rows(self, **identity: Any) -> list[dict[str, Any]]:
        """One dict per face: ``identity`` (the file, the request row) + face_index, box, box_source."""
        return [
            {**identity, "face_index": i, "x": x, "y": y, "w": w, "h": h, "box_source": self.box_source}
            for i, (x, y, w, h) in enumerate(self.boxes)
        ]


def find_faces(
    image: np.ndarray,
    detector: FaceDetector,
    margin: float = 0.2,
    whole_image_max_side: int = WHOLE_IMAGE_MAX_SIDE,
) -> FoundFaces:
    """Detect the faces of an RGB or grey image and crop them (``crop_faces``). An image with no
    detected face whose longer side is at most ``whole_image_max_side`` px is taken to be a face
    crop already (FER2013's 48x48 images, where the cascade misses most faces for lack of
    surrounding context) and cropped whole, without margin; 0 disables this."""
    gray = to_gray(image)
    boxes = detector.detect(gray)
    if boxes:
        return FoundFaces(boxes, "detector", crop_faces(gray, boxes, margin=margin))
    if max(gray.shape) <= whole_image_max_side:
        whole = [(0, 0, gray.shape[1], gray.shape[0])]
        return FoundFaces(whole, "whole_image", crop_faces(gray, whole, margin=0.0))
    return FoundFaces([], "detector", np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8))


def classify_crops(
    model: nn.Module,
    crops: np.ndarray,
    config: dict,
    tta: str = "none",
    device: str | torch.device | None = "auto",
    batch_size: int = 256,
    amp: bool | str = "auto",
) -> np.ndarray:
    """Class probabilities (F, K) of uint8 face crops (F, 48, 48): ``predict_logits`` (the
    model's own normalisation and input size, TTA, ``amp``; float32 logits whatever the
    autocast), then ``metrics.softmax`` in float64."""
    logits = predict_logits(model, crops, config, tta=tta, batch_size=batch_size, device=device, progress=False,
                            amp=amp)
    return softmax(logits)


def label_faces(
    rows: Sequence[dict[str, Any]], probabilities: np.ndarray, classes: Sequence[str]
) -> Sequence[dict[str, Any]]:
    """Add ``emotion`` (the most probable class), ``confidence`` (its probability) and
    ``prob_<class>`` to each face row, in place, row i from ``probabilities[i]``; returns ``rows``."""
    for row, probs in zip(rows, probabilities, strict=True):
        best = int(probs.argmax())
        row["emotion"] = classes[best]
        row["confidence"] = float(probs[best])
        for class_name, p in zip(classes, probs, strict=True):
            row[f"prob_{class_name}"] = float(p)
    return rows


# --------------------------------------------------------------------------------------------
# Photos -> predictions
# --------------------------------------------------------------------------------------------


@dataclass
class PredictionResult:
    """Outcome of ``predict_photos``.

    ``files``: every input file in processing order. ``rows``: one dict per face (file,
    face_index, x, y, w, h, box_source, emotion, confidence, prob_<class>...). ``no_face``:
    readable files without a detected face. ``unreadable``: {file, reason}. ``annotated``: unique name (file
    stem) -> RGB uint8 preview with boxes and labels, for every readable file.
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
        *[f"prob_{c}" for c in classes], "reason",
    ]


def result_table(result: PredictionResult):  # -> pandas.DataFrame (pandas imported lazily)
    """``result.csv_rows()`` as a DataFrame with the ``csv_columns`` order: integer box columns
    (nullable Int64), float confidence / probabilities (NaN off face rows), "" in text columns."""
    import pandas as pd

    columns = csv_columns(result.classes)
    table = pd.DataFrame(result.csv_rows(), columns=columns)
    for column in ("face_index", "x", "y", "w", "h"):
        table[column] = pd.to_numeric(table[column].replace("", None)).astype("Int64")
    for column in ("confidence", *[f"prob_{c}" for c in result.classes]):
        table[column] = pd.to_numeric(table[column].replace("", None)).astype("float64")
    return table


def collect_image_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, folders expanded to their image files (not recursive, sorted by name).

    Raises FileNotFoundError for a path that does not exist. Duplicates are dropped.
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(
                sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            )
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    seen: set[Path] = set()
    unique = []
    for file in files:
        key = file.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(file)
    return unique


def unique_name(stem: str, taken: Container[str]) -> str:
    """``stem``, or ``stem_2``, ``stem_3``, ... : the first not in ``taken`` (two inputs named
    ``a/face.jpg`` and ``b/face.jpg`` must not overwrite each other's outputs)."""
    name, counter = stem, 2
    while name in taken:
        name, counter = f"{stem}_{counter}", counter + 1
    return name


def annotate(
    image: np.ndarray,
    faces: Sequence[dict[str, Any]],
    max_side: int | None = ANNOTATED_MAX_SIDE,
) -> np.ndarray:
    """Copy of an RGB image (downscaled to ``max_side``) with a box and "emotion p" per face."""
    import cv2

    scale = 1.0
    if max_side is not None and max(image.shape[:2]) > max_side:
        scale = max_side / max(image.shape[:2])
        canvas = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    else:
        canvas = image.copy()
    canvas = np.ascontiguousarray(canvas)
    height, width = canvas.shape[:2]
    thickness = max(1, int(round(min(height, width) / 250)))
    font_scale = max(0.4, min(height, width) / 700)
    if not faces:
        cv2.putText(canvas, "no face found", (8, 8 + int(22 * font_scale)), cv2.FONT_HERSHEY_SIMPLEX,
                    font_scale, (255, 0, 0), thickness, cv2.LINE_AA)
    for face in faces:
        x, y, w, h = (int(round(face[k] * scale)) for k in ("x", "y", "w", "h"))
        color = EMOTION_COLORS.get(face["emotion"], (0, 255, 0))
        cv2.rectangle(canvas, (x, y), (x + w, y + h), color, thickness)
        label = f"{face['emotion']} {face['confidence']:.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        # Label above the box, or inside its top edge when the box touches the top of the image.
        top = y - text_h - baseline - 2 if y - text_h - baseline - 2 >= 0 else y
        cv2.rectangle(canvas, (x, top), (x + text_w + 4, top + text_h + baseline + 2), color, cv2.FILLED)
        text_color = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
        cv2.putText(canvas, label, (x + 2, top + text_h + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    text_color, thickness, cv2.LINE_AA)
    return canvas


def default_workers() -> int:
    """Decode+detect threads: one per core, at most 4. OpenCV releases the GIL while it decodes
    and runs the cascade, so threads scale with cores without the cost of processes."""
    return max(1, min(4, os.cpu_count() or 1))


def map_ordered(fn: Callable[[Any], Any], items: Iterable[Any], workers: int | None = None,
                ahead: int | None = None) -> Iterator[Any]:
    """``map(fn, items)`` in input order, run by ``workers`` threads (``default_workers()``
    when None; 1 runs inline). At most ``ahead`` items (default 2 x workers) are in flight, so
    a long input is read as it is consumed and results never pile up in memory; the consumer
    (classification, writing) overlaps with the threads."""
    workers = default_workers() if workers is None else max(1, int(workers))
    if workers == 1:
        yield from map(fn, items)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    ahead = max(workers, ahead or 2 * workers)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fer-detect") as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:  # the consumer stopped early or failed: drop the rest
                future.cancel()


@dataclass(frozen=True)
class _PhotoFaces:
    """What a decode+detect thread hands back for one file (``_read_photo``)."""

    name: str
    found: FoundFaces | None = None
    preview: np.ndarray | None = None
    preview_scale: float = 1.0
    reason: str = ""


def _read_photo(file: Path, detector: FaceDetector, margin: float, whole_image_max_side: int) -> _PhotoFaces:
    """Decode one file, find its faces and keep only a preview-sized copy of it (full-resolution
    photos would pile up in memory over a big folder). Runs in a worker thread."""
    name = str(file)
    try:
        image = load_image(file)
    except UnreadableImageError as error:
        return _PhotoFaces(name, reason=str(error))
    found = find_faces(image, detector, margin=margin, whole_image_max_side=whole_image_max_side)
    preview, scale = _preview(image)
    return _PhotoFaces(name, found, preview, scale)


def predict_photos(
    paths: Iterable[str | os.PathLike],
    model: nn.Module,
    config: dict,
    detector: FaceDetector | None = None,
    margin: float = 0.2,
    tta: str = "none",
    device: str | torch.device | None = "auto",
    progress: bool = True,
    batch_size: int = 256,
    whole_image_max_side: int = WHOLE_IMAGE_MAX_SIDE,
    amp: bool | str = "auto",
    workers: int | None = None,
) -> PredictionResult:
    """Detect faces in photos (files or folders) and classify each face's emotion.

    Each readable image goes through ``find_faces`` (so a small image with no detection is
    classified whole, ``box_source="whole_image"``, up to ``whole_image_max_side`` px; 0
    disables this), decoded and searched by ``workers`` threads (``map_ordered``; results in
    input order); unreadable files are recorded, not raised; all faces go through one
    batched ``classify_crops`` call. Raises FileNotFoundError for a missing input path.
    """
    classes = tuple(config.get("classes", CLASSES))
    detector = detector or FaceDetector()
    files = collect_image_files(paths)
    result = PredictionResult(classes=classes, files=[str(f) for f in files])

    def read(file: Path) -> _PhotoFaces:
        return _read_photo(file, detector, margin, whole_image_max_side)

    photos: Iterable[_PhotoFaces] = map_ordered(read, files, workers)
    if progress:
        try:
            from tqdm.auto import tqdm

            photos = tqdm(photos, total=len(files), desc="detect faces", unit="image")
        except ImportError:  # pragma: no cover
            pass

    crops: list[np.ndarray] = []
    # (file, preview image, preview / original scale, that file's face rows)
    pending: list[tuple[str, np.ndarray, float, list[dict[str, Any]]]] = []
    for photo in photos:
        if photo.found is None:
            result.unreadable.append({"file": photo.name, "reason": photo.reason})
            continue
        faces = photo.found.rows(file=photo.name)
        if faces:
            crops.append(photo.found.crops)
        else:
            result.no_face.append(photo.name)
        pending.append((photo.name, photo.preview, photo.preview_scale, faces))

    if crops:
        probabilities = classify_crops(model, np.concatenate(crops), config, tta=tta, device=device,
                                       batch_size=batch_size, amp=amp)
        # In place: the annotation below reads each face's emotion from the same dicts.
        result.rows.extend(label_faces([face for *_, faces in pending for face in faces], probabilities, classes))

    for name, preview, scale, faces in pending:
        key = unique_name(Path(name).stem, result.annotated)
        scaled = [{**face, **{k: face[k] * scale for k in ("x", "y", "w", "h")}} for face in faces]
        result.annotated[key] = annotate(preview, scaled, max_side=None)
    return result


def _preview(image: np.ndarray, max_side: int = ANNOTATED_MAX_SIDE, min_side: int = 192) -> tuple[np.ndarray, float]:
    """(image scaled to fit ``max_side``, or enlarged by an integer factor to at least
    ``min_side`` so labels stay legible on tiny face crops; the scale factor applied)."""
    import cv2

    longest = max(image.shape[:2])
    if longest < min_side:
        factor = -(-min_side // longest)
        return cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST), float(factor)
    if longest <= max_side:
        return image, 1.0
    scale = max_side / max(image.shape[:2])
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), scale


def write_outputs(result: PredictionResult, output_dir: str | os.PathLike) -> dict[str, Any]:
    """Write ``predictions.csv`` (status column: face / no_face / unreadable) and
    ``annotated/<name>.png``. Returns {"csv": Path, "annotated_dir": Path, "annotated": [Path]}."""
    import cv2

    output_dir = Path(output_dir)
    annotated_dir = output_dir / "annotated"
    annotated_dir.mkdir(parents=True, exist_ok=True)
    csv_path = output_dir / "predictions.csv"
    columns = csv_columns(result.classes)
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in result.csv_rows():
            writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    written = []
    for name, image in result.annotated.items():
        path = annotated_dir / f"{name}.png"
        ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if not ok:  # pragma: no cover
            raise RuntimeError(f"could not encode {path}")
        encoded.tofile(path)  # tofile: works with non-ASCII paths, unlike cv2.imwrite on Windows
        written.append(path)
    return {"csv": csv_path, "annotated_dir": annotated_dir, "annotated": written}
