"""One image -> its faces: detection, the whole-image rule for small images, square or aligned
(``align.py``) crops (shared by fer-predict, the predict stage, serving and cross-dataset evaluation)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fer_pipeline.core.classes import IMAGE_SIZE
from fer_pipeline.core.faces.align import align_crop, can_align
from fer_pipeline.core.faces.detector import LANDMARKS, Detection, Detector
from fer_pipeline.core.faces.images import to_gray

#: Images up to this size are classified whole, without detection (already face crops).
WHOLE_IMAGE_MAX_SIDE = 100
#: The per-face columns of a detection, after the CSVs' others: the detector's score, then x and
#: y of each landmark (``LANDMARKS``) in the image's pixels; empty for Haar, which has neither.
DETECTION_COLUMNS: tuple[str, ...] = ("score", *[f"{name}_{axis}" for name in LANDMARKS for axis in ("x", "y")])

Landmarks = tuple[tuple[float, float], ...]


def detection_fields(score: float | None, landmarks: Landmarks | None) -> dict[str, float | None]:
    """``DETECTION_COLUMNS`` -> value for one face: None where the detector gave none."""
    points = landmarks or ((None, None),) * len(LANDMARKS)
    coordinates = [value for point in points for value in point]
    return dict(zip(DETECTION_COLUMNS, [score, *coordinates], strict=True))


def landmark_points(row: Mapping[str, Any]) -> dict[str, list[float]] | None:
    """A face row's landmarks as {name: [x, y]} in ``LANDMARKS`` order (the served answer's
    ``landmarks``), None when the row has none (Haar, a whole image, a given crop)."""
    if row.get(f"{LANDMARKS[0]}_x") is None:
        return None
    return {name: [row[f"{name}_x"], row[f"{name}_y"]] for name in LANDMARKS}


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


@dataclass(frozen=True)
class FoundFaces:
    """The faces of one image: boxes (x, y, w, h) in its pixels, how they were found
    (``box_source``: ``detector``, the face detector; ``whole_image``, a small image taken
    to be a face crop already, without detection; ``crop``, given as a ready 48x48 face, serving's
    ``pixels``), and the crops the classifier takes, (F, 48, 48) uint8. ``detections``: the
    detector's ``Detection`` of each box (score, landmarks), empty when the boxes did not come
    from the detector."""

    boxes: list[tuple[int, int, int, int]]
    box_source: str
    crops: np.ndarray
    detections: list[Detection] = field(default_factory=list)

    def detection_fields(self, index: int) -> dict[str, float | None]:
        """Face ``index``'s ``DETECTION_COLUMNS`` (None where there is no score or landmark)."""
        if index >= len(self.detections):
            return detection_fields(None, None)
        return detection_fields(self.detections[index].score, self.detections[index].landmarks)

    def rows(self, **identity: Any) -> list[dict[str, Any]]:
        """One dict per face: ``identity`` (the file, the request row) + face_index, box,
        box_source and ``DETECTION_COLUMNS``."""
        return [
            {**identity, "face_index": i, "x": x, "y": y, "w": w, "h": h, "box_source": self.box_source,
             **self.detection_fields(i)}
            for i, (x, y, w, h) in enumerate(self.boxes)
        ]


def detection_crops(gray: np.ndarray, detections: Sequence[Detection], margin: float = 0.2,
                    align: bool = False) -> np.ndarray:
    """The (F, 48, 48) uint8 crops of detected faces: with ``align``, a face with landmarks (YuNet)
    levelled and framed like FER2013 (``align.align_crop``); any other face, and every face without
    ``align``, the square around its box (``crop_faces``)."""
    if not detections:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    return np.stack([
        align_crop(gray, detection.landmarks) if align and can_align(detection.landmarks)
        else crop_faces(gray, [detection.box], margin=margin)[0]
        for detection in detections
    ])


def find_faces(
    image: np.ndarray,
    detector: Detector,
    margin: float = 0.2,
    whole_image_max_side: int = WHOLE_IMAGE_MAX_SIDE,
    align: bool = False,
    channels: str = "rgb",
) -> FoundFaces:
    """Detect the faces of a colour or grey image and crop them (``detection_crops``: squares with
    ``margin``, or aligned crops of the faces with landmarks when ``align``). An image whose longer
    side is at most ``whole_image_max_side`` px is taken to be a face crop already (FER2013's 48x48
    images) and cropped whole, without margin or detection: it is then what the classifier was
    trained on, where a detector would re-crop it (YuNet finds the face in most such crops, the
    cascade misses most for lack of surrounding context); 0 disables this.

    ``channels``: the colour order of a 3-channel image, ``rgb`` (``decode_image``'s) or ``bgr``
    (OpenCV's, video frames, which then need no conversion). The image is made grey once, here,
    for the crops and the Haar cascade; YuNet takes the colour image. Each face keeps its detection
    (score and landmarks, in the image's pixels, for YuNet)."""
    gray = to_gray(image, channels)
    if max(gray.shape) <= whole_image_max_side:
        whole = [(0, 0, gray.shape[1], gray.shape[0])]
        return FoundFaces(whole, "whole_image", crop_faces(gray, whole, margin=0.0))
    detections = detector.detect_faces(image, gray=gray, channels=channels)
    if detections:
        boxes = [detection.box for detection in detections]
        crops = detection_crops(gray, detections, margin=margin, align=align)
        return FoundFaces(boxes, "detector", crops, list(detections))
    return FoundFaces([], "detector", np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8))
