"""Photos for the photo tests (faces, the photo path, serving): demo-renderer faces drawn into
photos, a folder of good and bad image files, a folder of TIFF photos with subfolders, a
model that counts its calls, and the checks of a face's landmarks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from fer_pipeline.demo import draw_photo

# Two drawn faces per photo; both are found by the Haar cascade for these seeds.
PHOTO_FACES = [(3, (60, 90, 130, 150)), (5, (290, 80, 120, 140))]
PHOTO_SEEDS = (1, 2)


def write_image(path: Path, image: np.ndarray, rgb: bool = True) -> Path:
    if rgb and image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(path.suffix, image)
    assert ok
    encoded.tofile(path)
    return path


class CountingModel(nn.Module):
    """Wraps a model and counts forward calls (predict_photos must batch all faces at once)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.batch_sizes.append(int(x.shape[0]))
        return self.inner(x)


def write_photo_folder(folder: Path) -> Path:
    """``folder`` with two group photos (``PHOTO_FACES``), a blank one, three unreadable files
    (empty, text, truncated JPEG) and a text file that is not an image by its extension."""
    for seed in PHOTO_SEEDS:
        write_image(folder / f"group_{seed}.jpg", draw_photo(PHOTO_FACES, rng=np.random.default_rng(seed)))
    write_image(folder / "blank.png", np.full((240, 320, 3), 128, dtype=np.uint8))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is not an image\n")
    photo = draw_photo(PHOTO_FACES, rng=np.random.default_rng(1))
    jpeg = cv2.imencode(".jpg", photo)[1].tobytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "readme.txt").write_text("ignored: not an image extension\n")
    return folder


#: ``write_tiff_folder``'s images, relative to the folder, in the order a folder scan finds them.
TIFF_FOLDER_IMAGES = ["KA.AN1.39.tiff", "KA.AN1.40.TIF", "a/face.tiff", "b/face.tiff"]


def write_tiff_folder(folder: Path) -> Path:
    """A folder like the JAFFE download: TIFF photos of drawn faces (``.tiff`` and ``.TIF``,
    written by ``cv2.imwrite``), two same-named ones in subfolders (``a/face.tiff`` with faces,
    ``b/face.tiff`` blank), a README that is not an image, and hidden files that are ignored
    (``.DS_Store``, ``.thumbs/hidden.tiff``). Its images: ``TIFF_FOLDER_IMAGES``."""
    photos = {"KA.AN1.39.tiff": 1, "KA.AN1.40.TIF": 2, "a/face.tiff": 2}
    for name, seed in photos.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        photo = draw_photo(PHOTO_FACES, rng=np.random.default_rng(seed))
        assert cv2.imwrite(str(folder / name), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    (folder / "b").mkdir()
    assert cv2.imwrite(str(folder / "b" / "face.tiff"), np.full((240, 320, 3), 128, np.uint8))
    (folder / "README.txt").write_text("The Japanese Female Facial Expression database\n")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / ".thumbs").mkdir()
    assert cv2.imwrite(str(folder / ".thumbs" / "hidden.tiff"), np.zeros((8, 8, 3), np.uint8))
    return folder


def assert_frontal_landmarks(box: Sequence[float], landmarks: Mapping[str, Sequence[float]]) -> None:
    """A frontal face's 5 landmarks (name -> (x, y), in the image's pixels): all inside its box,
    the person's right eye at the image's left (YuNet's sides are the person's own), the eyes
    above the mouth corners."""
    from fer_pipeline.core.faces.detector import LANDMARKS

    assert list(landmarks) == list(LANDMARKS)
    x, y, w, h = (float(v) for v in box)
    for px, py in landmarks.values():
        assert x <= float(px) <= x + w and y <= float(py) <= y + h, (box, landmarks)
    eyes = [landmarks["right_eye"], landmarks["left_eye"]]
    mouth = [landmarks["right_mouth_corner"], landmarks["left_mouth_corner"]]
    assert float(eyes[0][0]) < float(eyes[1][0])
    assert max(float(p[1]) for p in eyes) < min(float(p[1]) for p in mouth)


def csv_landmarks(row: Mapping[str, str]) -> dict[str, tuple[float, float]]:
    """A CSV row's landmark columns as name -> (x, y)."""
    from fer_pipeline.core.faces.detector import LANDMARKS

    return {name: (float(row[f"{name}_x"]), float(row[f"{name}_y"])) for name in LANDMARKS}
