"""Decoding: every kind of bad file in both error modes, colour and size conversion, workers, Pillow."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from fer_pipeline.core.ingestion import IngestionError, decoder_name, ingest

from .helpers import (
    check_consistent,
    face,
    make_class_tree,
    make_fer_folder,
    reasons_for,
    write_png,
)


def test_results_do_not_depend_on_worker_count(tmp_path: Path) -> None:
    make_fer_folder(tmp_path)
    one = ingest(tmp_path, workers=1, progress=False)
    three = ingest(tmp_path, workers=3, progress=True)
    np.testing.assert_array_equal(one.images, three.images)
    np.testing.assert_array_equal(one.source_ids, three.source_ids)
    np.testing.assert_array_equal(one.byte_hashes, three.byte_hashes)



def _zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def _truncated_jpeg(path: Path) -> None:
    ok, data = cv2.imencode(".jpg", face(77))
    path.write_bytes(data.tobytes()[: len(data) // 2])


def _truncated_png(path: Path) -> None:
    ok, data = cv2.imencode(".png", face(78))
    path.write_bytes(data.tobytes()[: len(data) // 2])


def _text(path: Path) -> None:
    path.write_text("not a face\n")


def _ds_store(path: Path) -> None:
    path.write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(range(256)) * 4)


def _colour(path: Path) -> None:
    cv2.imwrite(str(path), np.random.default_rng(5).integers(0, 256, (48, 48, 3), dtype=np.uint8))


def _odd_size(path: Path) -> None:
    cv2.imwrite(str(path), np.random.default_rng(6).integers(0, 256, (64, 80), dtype=np.uint8))



# (file name inside train/angry/, writer, reason category, option that makes it bad)
BAD_FILES = [
    ("Training_zero.jpg", _zero_bytes, "empty_file", {}),
    ("Training_trunc.jpg", _truncated_jpeg, "truncated_image", {}),
    ("Training_trunc.png", _truncated_png, "truncated_image", {}),
    ("Training_notes.txt", _text, "not_an_image", {}),
    (".DS_Store", _ds_store, "not_an_image", {}),
    ("Training_colour.png", _colour, "colour_image", {"colour": "reject"}),
    ("Training_big.png", _odd_size, "wrong_size", {"size": "reject"}),
]


@pytest.mark.parametrize("name, writer, category, options", BAD_FILES, ids=[b[2] + ":" + b[0] for b in BAD_FILES])
def test_bad_file_is_quarantined_or_fails(tmp_path: Path, name, writer, category, options) -> None:
    expected = make_fer_folder(tmp_path)
    writer(tmp_path / "train" / "angry" / name)
    item = f"train/angry/{name}"

    result = ingest(tmp_path, progress=False, **options)
    check_consistent(result)
    assert result.read == len(expected) + 1
    assert len(result.labels) == len(expected)
    [reason] = reasons_for(result, item)
    assert reason.startswith(category + ":")

    with pytest.raises(IngestionError) as raised:
        ingest(tmp_path, on_error="fail", progress=False, **options)
    assert item in str(raised.value) and category in str(raised.value)



def test_colour_and_size_are_converted_by_default(tmp_path: Path) -> None:
    make_fer_folder(tmp_path)
    _colour(tmp_path / "train/angry/Training_colour.png")
    _odd_size(tmp_path / "train/angry/Training_big.png")
    result = ingest(tmp_path, progress=False)
    check_consistent(result)
    assert not result.quarantine
    ids = result.source_ids.tolist()
    colour = cv2.imread(str(tmp_path / "train/angry/Training_colour.png"), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(result.images[ids.index("train/angry/Training_colour.png")],
                                  cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY))
    big = cv2.imread(str(tmp_path / "train/angry/Training_big.png"), 0)
    np.testing.assert_array_equal(result.images[ids.index("train/angry/Training_big.png")],
                                  cv2.resize(big, (48, 48), interpolation=cv2.INTER_AREA))



def test_grey_stored_as_rgb_is_not_colour(tmp_path: Path) -> None:
    make_fer_folder(tmp_path)
    grey = face(4242)
    write_png(tmp_path / "train/angry/Training_rgb.png", cv2.merge([grey, grey, grey]))
    result = ingest(tmp_path, colour="reject", progress=False)
    assert not result.quarantine
    np.testing.assert_array_equal(result.images[result.source_ids.tolist().index("train/angry/Training_rgb.png")], grey)



def test_without_opencv_pillow_decodes_the_same_faces(tmp_path: Path, monkeypatch) -> None:
    """The GPU box may lack OpenCV: ingestion then decodes, converts and resizes with Pillow."""
    import fer_pipeline.core.ingestion.decode as decode_module

    make_class_tree(tmp_path, per_class=3)
    yy, xx = np.mgrid[0:60, 0:52]
    rgb = np.stack([4 * yy, 4 * xx, 255 - 2 * (xx + yy)], axis=-1).clip(0, 255).astype(np.uint8)  # colour, odd-sized
    Image.fromarray(rgb).save(tmp_path / "happy" / "colour.png")
    with_cv2 = ingest(tmp_path, progress=False, seed=0)
    monkeypatch.setattr(decode_module, "opencv", lambda: None)
    with_pil = ingest(tmp_path, progress=False, seed=0)
    assert list(with_pil.source_ids) == list(with_cv2.source_ids)
    colour = list(with_cv2.source_ids).index("happy/colour.png")
    others = np.arange(len(with_cv2.labels)) != colour
    np.testing.assert_array_equal(with_pil.images[others], with_cv2.images[others])
    # grey conversion uses OpenCV's weights; area resize is Pillow's box filter: within a few levels
    diff = np.abs(with_pil.images[colour].astype(int) - with_cv2.images[colour].astype(int))
    assert diff.mean() < 2.0 and diff.max() <= 16



def test_decoder_name_says_which_library_decodes(monkeypatch) -> None:
    import fer_pipeline.core.ingestion.decode as decode_module

    assert decoder_name() == f"opencv {cv2.__version__}"
    monkeypatch.setattr(decode_module, "opencv", lambda: None)
    assert decoder_name() == "pillow"
