"""YuNet, OpenCV Zoo's small CNN face detector, shipped in the package (``models/``, MIT): each
face a box, a score and 5 landmarks. The file is found with ``importlib.resources`` and checked
against its sha256 before OpenCV loads it; nothing is ever downloaded."""

from __future__ import annotations

import copy
import hashlib
import threading
from importlib import resources
from pathlib import Path

import numpy as np

from fer_pipeline.core.faces.detector import (
    CASCADE_WINDOW,
    DETECT_MAX_SIDE,
    LANDMARKS,
    Box,
    Detection,
    detection_scale,
)
from fer_pipeline.core.faces.images import to_bgr

YUNET_FILE = "face_detection_yunet_2023mar.onnx"
#: opencv_zoo's models/face_detection_yunet/face_detection_yunet_2023mar.onnx (its LFS oid and size).
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
YUNET_BYTES = 232589
#: OpenCV's samples (samples/dnn/face_detect.py, opencv_zoo's demo) keep faces scoring 0.9; the
#: demo's drawn faces score 0.86-0.93 (4 of 40 under 0.9) and JAFFE photos 0.91 and more. Small
#: faces score lower: JAFFE's 50-px faces in 1280x960 frames, searched at 800 px, score 0.5-0.9,
#: and 0.6 keeps 99.5-100 % of them (0.7: 97-99 %) with no false box, where 0.5 adds some
#: (``benchmarks/faces_jaffe.py``, issue 29).
SCORE_THRESHOLD = 0.6
#: A photo with no face on the ``detect_max_side`` copy is searched again on a copy at most this
#: long: YuNet finds faces down to about 12 px of the copy it searches, and JAFFE's 50-px faces in
#: 1280x960 frames, 12 px at 320 px, were all missed there; searched at 800 px 99.5-100 % are
#: found (720: 96-98 %, 640: 71-86 %). Only photos without a found face pay for the second search.
RETRY_MAX_SIDE = 800
#: The smallest face kept, as a fraction of the image's shorter side: 29 px in a 1280x960 frame,
#: under the 40-45 px YuNet box of the small JAFFE faces (0.06, Haar's, dropped them all).
MIN_SIZE_FRACTION = 0.03
NMS_THRESHOLD = 0.3
TOP_K = 5000


class DetectorModelError(RuntimeError):
    """The shipped detector file is missing or is not the file it should be (a broken install)."""


def yunet_model_path() -> Path:
    """The shipped YuNet file, found as package data (``fer_pipeline/core/faces/models/``)."""
    return Path(str(resources.files("fer_pipeline.core.faces").joinpath("models", YUNET_FILE)))


def verify_model_file(path: str | Path, sha256: str = YUNET_SHA256, size: int = YUNET_BYTES) -> Path:
    """``path`` when its bytes are the expected file (size and sha256), else ``DetectorModelError``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DetectorModelError(f"face detector model {path} cannot be read ({error.strerror}); "
                                 "reinstall fer_pipeline") from error
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != size or digest != sha256:
        raise DetectorModelError(
            f"face detector model {path} is not the shipped YuNet file ({len(data)} bytes, sha256 {digest[:12]}…; "
            f"expected {size} bytes, sha256 {sha256[:12]}…); reinstall fer_pipeline")
    return path


class YuNetDetector:
    """Faces with landmarks: YuNet through ``cv2.FaceDetectorYN``, on CPU.

    ``detect_max_side``: as ``FaceDetector``'s, YuNet runs on a copy whose longer side is at most
    this many pixels (INTER_AREA), boxes and landmarks mapped back to full resolution; ``None``
    or 0 runs at full resolution. ``retry_max_side``: when that copy yields no face and the image
    is longer than it, YuNet searches again on a copy at most this long (``RETRY_MAX_SIDE``,
    800; None or 0: no second search), as the cascade retries on an equalised copy: small faces
    in large photos (12 px at 320, the least YuNet finds, is 5 % of a 1280x960 frame's width)
    are found, and photos whose faces the first search finds cost no more.
    ``score_threshold``: the least score kept (``SCORE_THRESHOLD``). A face is kept when both
    sides of its box reach the smallest face size: ``min_size`` pixels of the full-resolution
    image when given, else ``min_size_fraction`` x its shorter side (``MIN_SIZE_FRACTION``, 3 %,
    half the cascade's 6 %: YuNet's few false boxes are not tiny ones, and a 5 % face is a real
    face in a group or distant photo). The defaults were chosen on JAFFE and harder versions of
    it (``benchmarks/faces_jaffe.py``, docs/results.md, "Face detectors on real photos").

    Thread-safe: the model file is checked once, and each thread builds its own
    ``FaceDetectorYN`` (it keeps its input size and network state between calls).
    """

    def __init__(
        self,
        score_threshold: float = SCORE_THRESHOLD,
        nms_threshold: float = NMS_THRESHOLD,
        min_size: int | None = None,
        min_size_fraction: float = MIN_SIZE_FRACTION,
        detect_max_side: int | None = DETECT_MAX_SIDE,
        retry_max_side: int | None = RETRY_MAX_SIDE,
        model_path: str | Path | None = None,
    ) -> None:
        import cv2

        if not hasattr(cv2, "FaceDetectorYN"):
            raise RuntimeError(f"OpenCV {cv2.__version__} has no FaceDetectorYN (OpenCV 4.5.4 and later have it)")
        if not 0.0 < score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in (0, 1], got {score_threshold}")
        if detect_max_side is not None and (detect_max_side < 0 or 0 < detect_max_side < CASCADE_WINDOW):
            raise ValueError(f"detect_max_side must be 0 or None (full resolution) or at least {CASCADE_WINDOW}, "
                             f"got {detect_max_side}")
        if retry_max_side is not None and (retry_max_side < 0 or 0 < retry_max_side < CASCADE_WINDOW):
            raise ValueError(f"retry_max_side must be 0 or None (no second search) or at least {CASCADE_WINDOW}, "
                             f"got {retry_max_side}")
        self._model_path = str(verify_model_file(model_path or yunet_model_path()))
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.min_size = min_size
        self.min_size_fraction = min_size_fraction
        self.detect_max_side = detect_max_side or None
        self.retry_max_side = retry_max_side or None
        self._local = threading.local()
        self._net((CASCADE_WINDOW, CASCADE_WINDOW))  # fail here, in the caller's thread, when OpenCV cannot load it

    def _net(self, size: tuple[int, int]):  # -> cv2.FaceDetectorYN
        import cv2

        net = getattr(self._local, "net", None)
        if net is None:
            net = cv2.FaceDetectorYN.create(self._model_path, "", size, self.score_threshold,
                                            self.nms_threshold, TOP_K)
            self._local.net = net
        net.setInputSize(size)
        return net

    def single_search(self) -> YuNetDetector:
        """This detector without its second search (itself when it has none), sharing its checked
        model file: for video frames, where a frame without a face is common (someone turns away or
        leaves) and the next frame is searched anyway; the second search made a face-free 640x480
        frame cost 31.5 ms instead of 2.8."""
        if self.retry_max_side is None:
            return self
        single = copy.copy(self)
        single.retry_max_side, single._local = None, threading.local()
        return single

    def detection_scale(self, shape: tuple[int, ...]) -> float:
        """Factor (<= 1) from an image of ``shape`` to the copy YuNet searches."""
        return detection_scale(shape, self.detect_max_side)

    def _smallest_face(self, shape: tuple[int, ...]) -> float:
        if self.min_size is not None:
            return float(self.min_size)
        return min(shape[:2]) * self.min_size_fraction

    def detect_faces(self, image: np.ndarray, gray: np.ndarray | None = None,
                     channels: str = "rgb") -> list[Detection]:
        """Faces of a colour (H,W,3) image in ``channels`` order (``rgb`` or ``bgr``, which YuNet
        takes as it is) or grey (H,W) uint8 image: box (x, y, w, h) clipped to the image, score and
        landmarks (``LANDMARKS``) in its full-resolution pixels, sorted by box. ``gray`` is unused
        (the ``Detector`` protocol's: YuNet sees colour)."""
        bgr = to_bgr(image, channels)
        found = self._search(bgr, self.detection_scale(bgr.shape))
        if not found and self.retry_max_side is not None:
            retry = detection_scale(bgr.shape, self.retry_max_side)
            if retry > self.detection_scale(bgr.shape):  # a larger copy than the first search's
                found = self._search(bgr, retry)
        return found

    def _search(self, bgr: np.ndarray, scale: float) -> list[Detection]:
        """The faces YuNet finds on ``bgr`` resized by ``scale``, in ``bgr``'s pixels, sorted by box."""
        import cv2

        height, width = bgr.shape[:2]
        small = bgr
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        _, faces = self._net((small.shape[1], small.shape[0])).detect(small)
        if faces is None:
            return []
        fx, fy = width / small.shape[1], height / small.shape[0]
        smallest = self._smallest_face(bgr.shape)
        found = []
        for row in np.asarray(faces, dtype=np.float64).reshape(-1, 15):
            box = _full_box(row[:4], fx, fy, width, height)
            if box is None or min(box[2], box[3]) < smallest:
                continue
            points = tuple((float(x * fx), float(y * fy)) for x, y in row[4:14].reshape(len(LANDMARKS), 2))
            found.append(Detection(box, float(row[14]), points))
        return sorted(found, key=lambda detection: detection.box)

    def detect(self, image: np.ndarray) -> list[Box]:
        """Face boxes (x, y, w, h) in full-resolution pixels, sorted: ``FaceDetector.detect``'s format."""
        return [detection.box for detection in self.detect_faces(image)]


def _full_box(row: np.ndarray, fx: float, fy: float, width: int, height: int) -> Box | None:
    """YuNet's float box on the searched copy -> an int box of the full image, clipped to it
    (None when nothing of it lies inside)."""
    x, y, w, h = (float(v) for v in row)
    x0, y0 = max(0, round(x * fx)), max(0, round(y * fy))
    x1, y1 = min(width, round((x + w) * fx)), min(height, round((y + h) * fy))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1 - x0, y1 - y0
