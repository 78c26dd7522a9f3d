"""benchmarks/faces_jaffe.py's logic on drawn photos (never JAFFE): labels from JAFFE-style file
names, variants that keep the whole face in the frame with the true face carried along, and the
found / accuracy counting."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.evaluation.external_listing import ExternalSetError
from fer_pipeline.core.faces.detector import Detection
from fer_pipeline.core.models import build_resnet34, model_config
from fer_pipeline.demo import draw_photo

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "faces_jaffe.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("faces_jaffe", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_labels_come_from_jaffe_file_names(bench, tmp_path: Path):
    photo = draw_photo([(3, (60, 60, 130, 130))], size=(256, 256), rng=np.random.default_rng(0), color=False)
    for name in ("KA.AN1.39.tiff", "KM.SU3.75.tiff", "YM.HA2.53.tiff"):
        cv2.imwrite(str(tmp_path / name), photo)
    (tmp_path / "README").write_text("JAFFE", encoding="utf-8")  # set aside, as the external sets do
    files = bench.jaffe_listing(tmp_path, list(CLASSES))
    assert [(name, CLASSES[label]) for name, _path, label in files] == [
        ("KA.AN1.39.tiff", "angry"), ("KM.SU3.75.tiff", "surprise"), ("YM.HA2.53.tiff", "happy")]
    cv2.imwrite(str(tmp_path / "face.tiff"), photo)
    with pytest.raises(ExternalSetError, match="face.tiff"):
        bench.jaffe_listing(tmp_path, list(CLASSES))


def _square(size: int = 256, box: tuple[int, int, int, int] = (70, 50, 110, 130)) -> np.ndarray:
    image = np.zeros((size, size, 3), np.uint8)
    x, y, w, h = box
    image[y:y + h, x:x + w] = 255
    return image


def _bright_centre(image: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(image[:, :, 0] > 127)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


@pytest.mark.parametrize("name", ["original", "rot+15", "rot-15", "rot+30", "rot-30", "blur"])
def test_the_true_face_follows_each_variant_and_stays_in_the_frame(bench, name: str):
    box = (70, 50, 110, 130)
    variant = bench.make_variant(name, _square(box=box), np.random.default_rng(0))
    x, y, w, h = bench.mapped_box(box, variant.matrix)
    height, width = variant.image.shape[:2]
    assert 0 <= x and 0 <= y and x + w <= width and y + h <= height
    assert (w, h) == pytest.approx((110, 130))  # a rotation keeps the sides
    assert _bright_centre(variant.image) == pytest.approx([x + w / 2, y + h / 2], abs=1.0)
    if name.startswith("rot"):  # the whole rotated frame is kept: the canvas grows
        angle = np.radians(abs(float(name[3:])))
        assert width == height == round(256 * (np.cos(angle) + np.sin(angle)))


@pytest.mark.parametrize(("name", "scale"), [("framed", 1.0), ("small", 1 / 3)])
def test_framed_and_small_place_the_photo_whole_inside_a_large_frame(bench, name: str, scale: float):
    box = (70, 50, 110, 130)
    for seed in range(5):
        variant = bench.make_variant(name, _square(box=box), np.random.default_rng(seed))
        assert variant.image.shape == (960, 1280, 3)
        x, y, w, h = bench.mapped_box(box, variant.matrix)
        assert (w, h) == pytest.approx((110 * scale, 130 * scale), rel=0.01)
        assert 0 <= x and 0 <= y and x + w <= 1280 and y + h <= 960
        photo_x, photo_y = variant.matrix[:, 2]  # the pasted photo's corner: the face lies inside it
        side = round(256 * scale)
        assert photo_x <= x and photo_y <= y and x + w <= photo_x + side and y + h <= photo_y + side
        assert _bright_centre(np.where(variant.image > 250, 255, 0)) == pytest.approx([x + w / 2, y + h / 2], abs=1.0)


def test_dim_darkens_to_a_quarter_with_noise(bench):
    photo = draw_photo([(3, (60, 60, 130, 130))], size=(256, 256), rng=np.random.default_rng(0))
    dim = bench.make_variant("dim", photo, np.random.default_rng(0)).image
    assert dim.shape == photo.shape and dim.dtype == np.uint8
    assert dim.mean() == pytest.approx(photo.mean() * 0.25, abs=1.0)
    assert 2.0 < np.std(dim.astype(float) - photo * 0.25) < 4.0  # the noise, sigma 3


class _Boxes:
    """A detector that answers fixed boxes, one list per call."""

    def __init__(self, answers):
        self.answers = list(answers)

    def detect_faces(self, image, gray=None, channels="rgb"):
        return [Detection(box) for box in self.answers.pop(0)]


def test_a_photo_is_found_when_its_largest_face_is_the_true_one_and_missed_photos_are_wrong(bench):
    torch.manual_seed(0)
    model = build_resnet34(arch="resnet18").eval()
    config = model_config(arch="resnet18", input_size=44)
    images = [draw_photo([(3, (60, 60, 130, 130))], size=(256, 256), rng=np.random.default_rng(i)) for i in range(4)]
    truth = (60, 60, 130, 130)
    answers = [[(62, 58, 128, 132)],  # on the face
               [(0, 0, 30, 30), (60, 60, 120, 140)],  # a small false box beside the face: the face is largest
               [(120, 0, 136, 200), (60, 60, 130, 130)],  # a larger false box (IoU 0.26) is kept: not found
               []]  # nothing
    cell = bench.Cell("stub", _Boxes(answers))
    score = bench.score_cell(images, [truth] * 4, np.array([3, 3, 3, 3]), cell, model, config)
    assert score.found.tolist() == [True, True, False, False]
    assert not score.correct[2:].any() and score.accuracy_pct <= score.found_pct == 50.0
