"""Faces in an image: OpenCV's bundled Haar cascade (no download, CPU), searched on a downscaled
copy, boxes mapped back to full resolution; ``make_detector`` picks it or YuNet (``yunet.py``,
the shipped CNN with landmarks) by name; ``box_iou`` compares boxes."""

from __future__ import annotations

import numbers
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fer_pipeline.core.faces.images import to_gray

#: The detectors search a copy of each image at most this long (``FaceDetector``, ``YuNetDetector``).
DETECT_MAX_SIDE = 320
#: The frontal-face cascade's window: it finds no face smaller than this in the image it searches.
CASCADE_WINDOW = 24
#: The detectors ``make_detector`` builds (``detector`` in params:predict and params:serving,
#: an external set's ``detector``, ``fer-predict --detector``). YuNet is the default: on JAFFE and
#: harder versions of it (benchmarks/faces_jaffe.py, docs/results.md) it found every face Haar found and the
#: turned and small ones Haar missed, at the same end-to-end speed or better on most inputs.
DETECTOR_KINDS: tuple[str, ...] = ("haar", "yunet")
DEFAULT_DETECTOR = "yunet"
#: Whether faces with landmarks are cropped levelled and framed like FER2013 (``align.py``) by
#: default: on JAFFE it added 13-28 points of accuracy over the square crop (benchmarks/faces_jaffe.py).
DEFAULT_ALIGN = True

Box = tuple[int, int, int, int]
#: YuNet's landmarks, in the order of its output, as the person's own sides: in a frontal,
#: unmirrored photo their right eye is at the image's left (smaller x) and their left eye right.
LANDMARKS = ("right_eye", "left_eye", "nose_tip", "right_mouth_corner", "left_mouth_corner")


@dataclass(frozen=True)
class Detection:
    """One face: its box (x, y, w, h) in full-resolution pixels, the detector's score (None for
    Haar, which has none) and, for YuNet, 5 landmarks (x, y) in full-resolution pixels in
    YuNet's order ``LANDMARKS`` (None for Haar)."""

    box: Box
    score: float | None = None
    landmarks: tuple[tuple[float, float], ...] | None = None


class Detector(Protocol):
    """What callers use: boxes, or boxes with score and landmarks (``find_faces``). ``detect_faces``
    takes the image in its colour order ``channels`` (``images.CHANNEL_ORDERS``) and, when the caller
    has made it already, its grey version ``gray``, so that each image is converted once: the Haar
    cascade searches the grey image, YuNet the colour one (BGR)."""

    def detect(self, image: np.ndarray) -> list[Box]: ...

    def detect_faces(self, image: np.ndarray, gray: np.ndarray | None = None,
                     channels: str = "rgb") -> list[Detection]: ...


def check_detector_kind(kind: Any, where: str = "detector") -> str:
    """``kind`` when it names a detector (``DETECTOR_KINDS``), else ``ValueError`` naming ``where``
    (the parameter) and the closest name."""
    if kind not in DETECTOR_KINDS:
        import difflib

        close = difflib.get_close_matches(str(kind).lower(), DETECTOR_KINDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{where} must be one of {', '.join(DETECTOR_KINDS)}, got {kind!r}{hint}")
    return kind


def check_max_side(value: Any, name: str, zero: str) -> int | None:
    """``value`` as a copy's longest side for a detector: a whole number of pixels >= the cascade's
    window, or 0 (``zero``: what 0, and None, mean: e.g. ``0/null (full resolution)``); None for
    0/None. ``name``: the parameter, as the message names it."""
    if value is None or (value == 0 and not isinstance(value, bool)):
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < CASCADE_WINDOW:
        raise ValueError(f"{name} must be a whole number of pixels >= {CASCADE_WINDOW} (the smallest face the "
                         f"detectors see), or {zero}, got {value!r}")
    return int(value)


def detector_options(kind: str, min_score: Any = None, min_face: Any = None, where: str = "", *,
                     detect_max_side: Any = DETECT_MAX_SIDE, detect_retry_max_side: Any = None) -> dict[str, Any]:
    """``make_detector(kind, **options)``'s keyword arguments, checked here for every entry point
    (``where``: the parameter group the messages name, e.g. ``predict``): the copy searched
    (``detect_max_side``, its longer side in pixels, 0/None: full resolution); YuNet's second
    search on a larger copy when the first finds no face (``detect_retry_max_side``, its
    ``retry_max_side``: None keeps its default, ``yunet.RETRY_MAX_SIDE``; 0: none); the least
    score a face keeps (``min_score``, in (0, 1], YuNet's ``score_threshold``; the cascade gives no
    score) and the smallest face kept (``min_face``, a fraction of the image's shorter side in
    [0, 1), ``min_size_fraction``); None keeps the detector's own default."""
    prefix = f"{where}." if where else ""
    check_detector_kind(kind, f"{prefix}detector")
    options: dict[str, Any] = {
        "detect_max_side": check_max_side(detect_max_side, f"{prefix}detect_max_side", "0/null (full resolution)")}
    if detect_retry_max_side is not None:
        retry = check_max_side(detect_retry_max_side, f"{prefix}detect_retry_max_side",
                               "0 (no second search), or null (the detector's default, 800)")
        if retry is not None and kind != "yunet":
            raise ValueError(f"{prefix}detect_retry_max_side needs the yunet detector (the Haar cascade retries on "
                             "an equalised copy instead); 0 or null with haar")
        first = options["detect_max_side"]
        if retry is not None and (first is None or retry <= first):
            # the second search only ever looks at a larger copy than the first: this one would never run
            raise ValueError(f"{prefix}detect_retry_max_side ({retry}) must be larger than {prefix}detect_max_side "
                             f"({'0, full resolution' if first is None else first}), or 0 for no second search")
        if kind == "yunet":
            options["retry_max_side"] = retry
    if min_score is not None:
        if isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or not 0 < min_score <= 1:
            raise ValueError(f"{prefix}min_score must be a number in (0, 1], or null for the detector's default, "
                             f"got {min_score!r}")
        if kind != "yunet":
            raise ValueError(f"{prefix}min_score needs the yunet detector: the Haar cascade gives its faces no score")
        options["score_threshold"] = float(min_score)
    if min_face is not None:
        if isinstance(min_face, bool) or not isinstance(min_face, (int, float)) or not 0 <= min_face < 1:
            raise ValueError(f"{prefix}min_face must be a fraction of the image's shorter side in [0, 1) (0.05: "
                             f"faces from 5 %), or null for the detector's default, got {min_face!r}")
        options["min_size_fraction"] = float(min_face)
    return options


def make_detector(kind: str = DEFAULT_DETECTOR, **params: Any) -> Detector:
    """The face detector named ``kind`` (``haar``: ``FaceDetector``; ``yunet``:
    ``yunet.YuNetDetector``), built with ``params`` (``detect_max_side``, ...)."""
    check_detector_kind(kind)
    if kind == "yunet":
        from fer_pipeline.core.faces.yunet import YuNetDetector

        return YuNetDetector(**params)
    return FaceDetector(**params)


def detection_scale(shape: tuple[int, ...], detect_max_side: int | None) -> float:
    """Factor (<= 1) from an image of ``shape`` to the copy a detector searches, whose longer side
    is at most ``detect_max_side`` (None: the image itself)."""
    longest = max(shape[:2])
    if detect_max_side is None or longest <= detect_max_side:
        return 1.0
    return detect_max_side / longest


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
        return detection_scale(shape, self.detect_max_side)

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
        """Face boxes (x, y, w, h) in pixels of ``gray`` (an RGB image is made grey first; full
        resolution, whatever scale the cascade searched at), sorted left to right then top to bottom."""
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

    def detect_faces(self, image: np.ndarray, gray: np.ndarray | None = None,
                     channels: str = "rgb") -> list[Detection]:
        """``detect``'s boxes as ``Detection``s, without score or landmarks (the cascade has none),
        searched in ``gray`` when given (``image`` made grey, the caller's), else in ``image`` made
        grey from its colour order ``channels``."""
        return [Detection(box) for box in self.detect(to_gray(image, channels) if gray is None else gray)]


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
