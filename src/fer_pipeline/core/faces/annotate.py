"""Annotated previews: an image with a box and "emotion p" per face, scaled to a preview size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

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


def preview_image(
    image: np.ndarray, max_side: int = ANNOTATED_MAX_SIDE, min_side: int = 192
) -> tuple[np.ndarray, float]:
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
