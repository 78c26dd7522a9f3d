"""Small generated external sets (never real ones) for the cross-dataset evaluation tests.

Crops: drawn faces (``fer_pipeline.demo.draw_face``) saved at other sizes, in colour, in class
folders named as other datasets name them. Photos: drawn photos (``draw_photo``) with one or two
faces, and a plain photo with no face at all. A model that always predicts one class makes every
prediction known in advance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.demo import draw_face, draw_photo

#: Class folder -> number of crops, as CK+48 names its folders (no neutral); "Happy" tests the
#: case-insensitive identity.
CROP_FOLDERS = {"anger": 3, "Happy": 2, "sadness": 2, "contempt": 2}
CROP_MAP = {"anger": "angry", "sadness": "sad", "contempt": None}


def colour_face(label: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """A drawn face as a BGR colour image of side ``size`` (tinted, so its channels differ)."""
    grey = draw_face(label, rng, size=size).astype(np.float32)
    bgr = np.stack([grey * 0.8, grey * 0.95, np.minimum(grey * 1.15 + 10, 255)], axis=-1)
    return np.clip(bgr + 0.5, 0, 255).astype(np.uint8)


def write_crops(root: Path, folders: dict[str, int] = CROP_FOLDERS, seed: int = 0) -> Path:
    """``root/<folder>/<i>.png|.jpg``: colour crops of 64 and 96 px, alternately PNG and JPEG."""
    import cv2

    rng = np.random.default_rng(seed)
    for folder, count in folders.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            size = 64 if index % 2 == 0 else 96
            suffix = ".png" if index % 2 == 0 else ".jpg"
            cv2.imwrite(str(root / folder / f"{folder.lower()}_{index}{suffix}"), colour_face(index % 7, rng, size))
    return root


def one_face_photo(label: int, seed: int) -> np.ndarray:
    """RGB 240x200 photo with one ~130 px face (found by the Haar cascade for these seeds)."""
    return draw_photo([(label, (40, 30, 130, 130))], size=(240, 200), rng=np.random.default_rng([seed, 7]))


def two_face_photo(seed: int = 0) -> np.ndarray:
    """RGB 360x240 photo with a 150 px face on the left and a 110 px one on the right."""
    return draw_photo([(1, (20, 40, 150, 150)), (2, (220, 60, 110, 110))], size=(360, 240),
                      rng=np.random.default_rng([seed, 8]))


def faceless_photo() -> np.ndarray:
    """RGB 240x200 smooth gradient: nothing a face detector could find."""
    ramp = np.linspace(60, 190, 240, dtype=np.float32)[None, :, None]
    return np.broadcast_to(ramp, (200, 240, 3)).astype(np.uint8)


def save_rgb(path: Path, image: np.ndarray) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def write_photos(root: Path) -> Path:
    """``root/happy``: 2 one-face photos; ``root/sad``: the two-face photo; ``root/angry``: the
    faceless photo. 4 photos, 1 without a face, 1 with two faces."""
    save_rgb(root / "happy" / "h0.jpg", one_face_photo(3, seed=0))
    save_rgb(root / "happy" / "h1.png", one_face_photo(3, seed=1))
    save_rgb(root / "sad" / "group.jpg", two_face_photo())
    save_rgb(root / "angry" / "empty.png", faceless_photo())
    return root


class ConstantModel(nn.Module):
    """Predicts class ``index`` for every face (the logits ignore the pixels)."""

    def __init__(self, index: int, num_classes: int = len(CLASSES)) -> None:
        super().__init__()
        logits = torch.zeros(num_classes)
        logits[index] = 5.0
        self.logits = nn.Parameter(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1)


def constant_config() -> dict:
    return {"classes": list(CLASSES), "num_classes": len(CLASSES), "in_channels": 1, "input_size": 48}
