"""Aligned face crops: a face with landmarks (YuNet) is rotated so that its eye line is level and
cropped where its eyes, scaled by their distance, put it in FER2013's framing (the classifier was
trained on FER2013's tight, roughly eye-aligned crops, about brows to chin)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fer_pipeline.core.classes import IMAGE_SIZE

Landmarks = Sequence[tuple[float, float]]

# FER2013's framing, the medians over the 2905 of 3000 training faces (seed 0) where YuNet found
# landmarks (``python benchmarks/fer2013_framing.py --data ../shared/datasets/fer2013/train``,
# upscale 4, pad 0.25), as fractions of the crop side, the face seen level:
#: The distance between the eyes (quartiles 0.337 and 0.416; 0.375-0.410 with other upscales and pads).
EYE_DISTANCE = 0.379
#: The eyes' midpoint from the left: measured 0.498 (quartiles 0.476 and 0.520); 0.5, so that a
#: face and its mirror image are framed alike.
EYES_X = 0.5
#: The eyes' midpoint from the top (quartiles 0.351 and 0.415).
EYES_Y = 0.393
#: FER2013's framing widened this many times about its centre (1: its median framing).
#: The eye distance alone sets the scale: the mouth's drop below the eyes varies more across
#: FER2013's faces (interquartile range 24% of its median against 21%), and mixing the two
#: (their mean or geometric mean) varied no less.
ALIGN_SCALE = 1.0
#: Faces whose eyes are closer than this many pixels keep the square crop (no usable eye line).
MIN_EYE_DISTANCE = 1.0


@dataclass(frozen=True)
class FaceFrame:
    """A face's own axes from its landmarks (``detector.LANDMARKS`` order), in image pixels:
    ``eyes``, the midpoint of the eyes; ``angle``, the eye line's angle in radians (the person's
    right eye to their left eye, 0 when level, positive when the left eye is lower);
    ``eye_distance``; ``mouth_drop``, how far the mouth corners' midpoint lies below the eyes,
    across the eye line."""

    eyes: tuple[float, float]
    angle: float
    eye_distance: float
    mouth_drop: float

    def to_face(self, point: Sequence[float]) -> tuple[float, float]:
        """An image point -> (along the eye line, across it, downwards) from the eyes' midpoint."""
        dx, dy = point[0] - self.eyes[0], point[1] - self.eyes[1]
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        return dx * cos + dy * sin, -dx * sin + dy * cos


def face_frame(landmarks: Landmarks) -> FaceFrame:
    """The ``FaceFrame`` of 5 landmarks (right eye, left eye, nose tip, right and left mouth corner)."""
    (rx, ry), (lx, ly) = landmarks[0], landmarks[1]
    eyes = ((rx + lx) / 2.0, (ry + ly) / 2.0)
    mouth = ((landmarks[3][0] + landmarks[4][0]) / 2.0, (landmarks[3][1] + landmarks[4][1]) / 2.0)
    frame = FaceFrame(eyes, math.atan2(ly - ry, lx - rx), math.hypot(lx - rx, ly - ry), 0.0)
    return FaceFrame(eyes, frame.angle, frame.eye_distance, frame.to_face(mouth)[1])


def can_align(landmarks: Landmarks | None) -> bool:
    """True when ``landmarks`` give an eye line to align on (YuNet's faces; not Haar's, which have none)."""
    return landmarks is not None and face_frame(landmarks).eye_distance >= MIN_EYE_DISTANCE


def aligned_window(landmarks: Landmarks, scale: float = ALIGN_SCALE) -> tuple[np.ndarray, int]:
    """(2x3 affine matrix, window side): ``cv2.warpAffine`` with them maps the image onto a square
    window of about the crop's side in image pixels, rotated so that the eye line is level, the
    eyes at (``EYES_X``, ``EYES_Y``) x side and ``EYE_DISTANCE`` x side apart: FER2013's framing,
    widened ``scale`` times about its centre."""
    frame = face_frame(landmarks)
    side = frame.eye_distance / EYE_DISTANCE * scale
    window = max(1, int(round(side)))
    zoom = window / side  # the rounding of the window, so that the framing stays exact
    cos, sin = math.cos(frame.angle) * zoom, math.sin(frame.angle) * zoom
    rotation = np.array([[cos, sin], [-sin, cos]])
    # The framing is in pixel edges (the window spans [0, window)), the matrix in pixel indices
    # (pixel i's centre is at i + 0.5): the eyes' index lands at the target's edge position - 0.5.
    # scale widens (> 1) or narrows the FER2013 framing about its centre.
    target = ((np.array([EYES_X, EYES_Y]) - 0.5) / scale + 0.5) * window - 0.5
    shift = target - rotation @ np.array(frame.eyes)
    return np.hstack([rotation, shift[:, None]]), window


def align_crop(gray: np.ndarray, landmarks: Landmarks, size: int = IMAGE_SIZE,
               scale: float = ALIGN_SCALE) -> np.ndarray:
    """The (size, size) uint8 crop of a grey image's face with ``landmarks``, levelled and framed like
    FER2013 (``aligned_window``). As ``crops.crop_faces``: the window is taken at the image's own
    scale (rotated, bilinear), edge pixels replicated past the image border, then resized with
    INTER_AREA, so a large face is averaged down rather than sampled."""
    import cv2

    matrix, window = aligned_window(landmarks, scale)
    level = cv2.warpAffine(gray, matrix, (window, window), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(level, (size, size), interpolation=cv2.INTER_AREA)
