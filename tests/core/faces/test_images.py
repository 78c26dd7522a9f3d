"""Tests for core.faces.images: image files and bytes -> RGB pixels, bad files refused."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_pipeline.core.faces.images import UnreadableImageError, load_image
from tests.core.photo_files import write_image, write_photo_folder


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photo_folder(tmp_path_factory.mktemp("photos"))


def test_load_image_colour_gray_rgba_16bit(tmp_path: Path) -> None:
    rgb = np.zeros((10, 12, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # red
    loaded = load_image(write_image(tmp_path / "colour.png", rgb))
    assert loaded.shape == (10, 12, 3) and loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded[0, 0], [200, 0, 0])

    gray = np.arange(120, dtype=np.uint8).reshape(10, 12)
    loaded = load_image(write_image(tmp_path / "gray.png", gray))
    assert loaded.shape == (10, 12, 3)
    np.testing.assert_array_equal(loaded[..., 1], gray)

    rgba = np.zeros((10, 12, 4), dtype=np.uint8)  # BGRA for OpenCV
    rgba[:, :6] = (0, 0, 255, 255)  # opaque red on the left
    loaded = load_image(write_image(tmp_path / "rgba.png", rgba, rgb=False))
    np.testing.assert_array_equal(loaded[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(loaded[0, 11], [255, 255, 255])  # transparent -> white

    deep = np.full((8, 8), 40000, dtype=np.uint16)
    loaded = load_image(write_image(tmp_path / "deep.png", deep))
    assert loaded.dtype == np.uint8
    assert abs(int(loaded[0, 0, 0]) - 40000 // 257) <= 1

    jpeg = load_image(write_image(tmp_path / "ünïcode photo.jpg", np.full((16, 16, 3), 90, np.uint8)))
    assert jpeg.shape == (16, 16, 3) and abs(int(jpeg.mean()) - 90) <= 2


@pytest.mark.parametrize("name", ["empty.jpg", "notes.jpg", "truncated.jpg"])
def test_load_image_rejects_bad_files(photo_folder: Path, name: str) -> None:
    with pytest.raises(UnreadableImageError):
        load_image(photo_folder / name)


def test_load_image_rejects_truncated_png(tmp_path: Path) -> None:
    png = cv2.imencode(".png", np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))[1].tobytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    with pytest.raises(UnreadableImageError):
        load_image(tmp_path / "cut.png")


def test_decode_image_refuses_more_pixels_than_allowed_from_the_header(tmp_path: Path, monkeypatch) -> None:
    from fer_pipeline.core.faces.images import ImageTooLargeError, decode_image, image_size

    raw = cv2.imencode(".png", np.zeros((30, 40), np.uint8))[1].tobytes()
    assert image_size(raw) == (40, 30) and image_size(b"not an image") is None
    assert decode_image(raw, max_pixels=1200).shape == (30, 40, 3)  # at the limit: decoded
    np.testing.assert_array_equal(decode_image(raw), load_image(write_image(tmp_path / "a.png", np.zeros((30, 40),
                                                                                                       np.uint8))))
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: pytest.fail("decoded an image over the limit"))
    with pytest.raises(ImageTooLargeError, match=r"40x30 = 1,200 pixels is over the limit of 1,199"):
        decode_image(raw, max_pixels=1199)
    assert issubclass(ImageTooLargeError, UnreadableImageError)  # who catches unreadable images catches it too


def test_load_image_refuses_an_image_over_the_servers_limit_by_default(tmp_path: Path, monkeypatch) -> None:
    """fer-predict's photos get fer-serve's limit (one constant), read from the file's header."""
    from fer_pipeline.core.faces.images import ImageTooLargeError
    from fer_pipeline.core.serving.requests import ServingConfig

    limit = ServingConfig().max_pixels
    side = int(limit ** 0.5) + 1  # just over the limit; a flat PNG of it is small
    big = write_image(tmp_path / "big.png", np.zeros((side, side), np.uint8))
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: pytest.fail("decoded an image over the limit"))
    with pytest.raises(ImageTooLargeError, match=f"{side}x{side} = {side * side:,} pixels is over the limit of "
                                                 f"{limit:,}"):
        load_image(big)


def test_to_gray_and_to_bgr_follow_the_colour_order() -> None:
    from fer_pipeline.core.faces.images import to_bgr, to_gray

    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    bgr = rgb[..., ::-1].copy()
    np.testing.assert_array_equal(to_gray(rgb), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    np.testing.assert_array_equal(to_gray(bgr, "bgr"), to_gray(rgb))
    assert not np.array_equal(to_gray(bgr), to_gray(rgb))
    assert to_bgr(bgr, "bgr") is bgr  # already OpenCV's order: no copy
    np.testing.assert_array_equal(to_bgr(rgb), bgr)
    grey = to_gray(rgb)
    assert to_gray(grey, "bgr") is grey and to_bgr(grey).shape == (20, 30, 3)
    with pytest.raises(ValueError, match="channels must be one of rgb, bgr"):
        to_gray(rgb, "hsv")
