"""One image -> its faces: detection, the whole-image rule for small images, square crops
(shared by fer-predict, the predict stage, serving and cross-dataset evaluation)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fer_pipeline.core.classes import IMAGE_SIZE
from fer_pipeline.core.faces.detector import Detector
from fer_pipeline.core.faces.images import to_gray

#: Images up to this size with no detected face are classified whole (already face crops).
WHOLE_IMAGE_MAX_SIDE = 100


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
    (``box_source``: ``detector``, the face detector; ``whole_image``, a small image with no
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
    detector: Detector,
    margin: float = 0.2,
    whole_image_max_side: int = WHOLE_IMAGE_MAX_SIDE,
) -> FoundFaces:
    """Detect the faces of an RGB or grey image and crop them (``crop_faces``). An image with no
    detected face whose longer side is at most ``whole_image_max_side`` px is taken to be a face
    crop already (FER2013's 48x48 images, where the cascade misses most faces for lack of
    surrounding context) and cropped whole, without margin; 0 disables this. The detector gets
    the image as given (YuNet uses colour), the crops are grey."""
    gray = to_gray(image)
    boxes = detector.detect(image)
    if boxes:
        return FoundFaces(boxes, "detector", crop_faces(gray, boxes, margin=margin))
    if max(gray.shape) <= whole_image_max_side:
        whole = [(0, 0, gray.shape[1], gray.shape[0])]
        return FoundFaces(whole, "whole_image", crop_faces(gray, whole, margin=0.0))
    return FoundFaces([], "detector", np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8))
