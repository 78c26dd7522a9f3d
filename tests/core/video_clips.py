"""Short synthetic clips for the video tests: demo-renderer faces written with cv2.VideoWriter."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fer_pipeline.demo import draw_photo

#: The still face's box in every frame of ``write_clip`` (x, y, w, h).
STILL_FACE = (200, 60, 100, 100)
#: The moving face's box in frame 0; it moves ``MOVING_STEP`` px right per frame.
MOVING_FACE = (20, 80, 100, 100)
MOVING_STEP = (3, 1)
FOURCC = {".avi": "MJPG", ".mp4": "mp4v", ".mkv": "mp4v"}


def clip_frames(frames: int, moving: bool = True, seed: int = 0) -> list[np.ndarray]:
    """RGB 320x240 frames: one still face, and (``moving``) a second one drifting right and down."""
    rng = np.random.default_rng(seed)
    background = draw_photo([(4, STILL_FACE)], size=(320, 240), rng=rng)
    x0, y0, w, h = MOVING_FACE
    patch = draw_photo([(3, (15, 15, w, h))], size=(w + 30, h + 40), rng=rng)  # face + hair, no neck cut
    out = []
    for index in range(frames):
        frame = background.copy()
        if moving:
            x, y = x0 - 15 + MOVING_STEP[0] * index, y0 - 15 + MOVING_STEP[1] * index
            frame[y:y + patch.shape[0], x:x + patch.shape[1]] = patch
        out.append(frame)
    return out


def write_clip(path: Path, frames: int = 12, moving: bool = True, fps: float = 10.0) -> Path:
    """``clip_frames`` written with ``cv2.VideoWriter`` (MJPG for .avi, mp4v for .mp4/.mkv)."""
    images = clip_frames(frames, moving)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC[path.suffix]), fps, (320, 240))
    assert writer.isOpened()
    for image in images:
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def read_video(path: Path) -> list[np.ndarray]:
    """Every frame OpenCV decodes from ``path`` (BGR)."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames
