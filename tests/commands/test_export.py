"""Tests for ``fer-export``: a model file to a checked ONNX file, the faces it is checked on, and
the exit codes of a missing or corrupt model, no faces, and a refused export."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_pipeline.commands.export import main
from fer_pipeline.core import onnx_export
from fer_pipeline.core.evaluation.dataset_identity import training_data_record
from fer_pipeline.core.models import save_model
from fer_pipeline.core.onnx_model import load_onnx_model
from fer_pipeline.demo import draw_face
from tests.core.onnx_files import small_model

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    model, config = small_model()
    return save_model(tmp_path_factory.mktemp("model") / "model.pt", model, config)


@pytest.fixture(scope="module")
def face_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    for index in range(10):  # in subfolders, as FER2013's test/<class>/ are; larger than 48 px
        path = folder / f"class_{index % 3}" / f"face_{index}.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), draw_face(index % 7, rng, size=96))
    return folder


def test_writes_an_onnx_file_checked_on_the_given_faces(model_file, face_folder, tmp_path, capsys):
    out = tmp_path / "deploy" / "model.onnx"
    assert main([str(model_file), str(out), "--faces", str(face_folder), "--count", "6"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out} (") and "agrees with PyTorch on 6 faces of" in printed
    assert "top-1 class the same on 100.00%" in printed
    assert load_onnx_model(out).config["stem"] == "imagenet"
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx"]


def test_without_faces_it_takes_the_ingested_dataset_the_model_was_trained_on(tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    (project / "conf").mkdir(parents=True)
    shutil.copytree(REPO / "conf" / "base", project / "conf" / "base")
    shutil.copy(REPO / "pyproject.toml", project)
    rng = np.random.default_rng(0)
    labels = np.arange(14) % 7
    dataset = {"images": np.stack([draw_face(int(c), rng) for c in labels]), "labels": labels,
               "splits": np.array(["train"] * 7 + ["val"] * 7), "source_ids": np.array([f"{i}.jpg" for i in labels]),
               "classes": np.array(["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"])}
    (project / "data" / "03_primary").mkdir(parents=True)
    np.savez(project / "data" / "03_primary" / "fer_dataset.npz", **dataset)
    model, config = small_model()
    trained = save_model(project / "model.pt", model, {**config, "training_data": training_data_record(dataset)})
    monkeypatch.chdir(project)
    assert main([str(trained), "model.onnx"]) == 0
    assert "agrees with PyTorch on 7 faces of" in capsys.readouterr().out  # the validation split
    untrained_here = save_model(project / "other.pt", model, config)  # records a dataset not ingested here
    assert main([str(untrained_here), "other.onnx"]) == 2
    err = capsys.readouterr().err
    assert "the model was trained on dataset 0123456789abcdef, which this project has not ingested" in err
    assert "pass --faces" in err and not (project / "other.onnx").exists()


def test_a_missing_or_corrupt_model_exits_3_and_bad_arguments_2(model_file, face_folder, tmp_path, capsys):
    assert main([str(tmp_path / "absent.pt"), str(tmp_path / "m.onnx")]) == 3
    assert "model file not found" in capsys.readouterr().err
    (tmp_path / "corrupt.pt").write_bytes(b"not a model")
    assert main([str(tmp_path / "corrupt.pt"), str(tmp_path / "m.onnx"), "--faces", str(face_folder)]) == 3
    assert "corrupt.pt is not a model file of this project" in capsys.readouterr().err
    assert main([str(model_file), str(tmp_path / "m.pt")]) == 2
    assert "OUT must be a file name ending in .onnx" in capsys.readouterr().err
    assert main([str(model_file), str(tmp_path / "m.onnx"), "--faces", str(tmp_path / "nowhere")]) == 2
    assert "--faces: no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_a_disagreeing_export_exits_1_and_writes_nothing(model_file, face_folder, tmp_path, monkeypatch, capsys):
    other, config = small_model(seed=1)
    tampered = onnx_export.onnx_bytes(other, config)
    monkeypatch.setattr(onnx_export, "onnx_bytes", lambda *args: tampered)
    assert main([str(model_file), str(tmp_path / "m.onnx"), "--faces", str(face_folder)]) == 1
    assert "does not agree with PyTorch" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_int8_is_calibrated_on_the_given_training_faces_and_states_its_agreement(model_file, face_folder, tmp_path,
                                                                                  capsys):
    import logging
    import sys

    out = tmp_path / "model_int8.onnx"
    root, handler = logging.getLogger(), logging.StreamHandler(sys.stdout)  # a program logging INFO to stdout
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        assert main([str(model_file), str(out), "--int8", "--faces", str(face_folder), "--count", "6",
                     "--calibration", str(face_folder)]) == 0
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out} (") and "int8, calibrated on 10 training faces" in printed
    assert printed.count("\n") == 1  # onnxruntime's quantisation logs nothing of its own
    assert "top-1 class the same on" in printed
    assert "int8" in load_onnx_model(out).session.get_modelmeta().custom_metadata_map["quantization"]


def test_int8_without_training_faces_says_what_to_pass(model_file, face_folder, tmp_path, capsys):
    assert main([str(model_file), str(tmp_path / "m.onnx"), "--int8", "--faces", str(face_folder)]) == 2
    error = capsys.readouterr().err
    assert "no faces to calibrate the export on" in error and "pass --calibration" in error
    assert "fer2013/train" in error and not (tmp_path / "m.onnx").exists()
    assert main([str(model_file), str(tmp_path / "m.onnx"), "--int8", "--faces", str(face_folder),
                 "--calibration", str(tmp_path / "missing")]) == 2
    assert "--calibration: no such file or folder" in capsys.readouterr().err


def test_image_files_become_faces_as_ingestion_makes_them_and_unreadable_ones_are_passed_over(tmp_path):
    from fer_pipeline.commands.export import _image_faces

    rng = np.random.default_rng(1)
    grey = draw_face(3, rng, size=96)
    colour = np.dstack([grey, np.roll(grey, 5, axis=1), 255 - grey])  # BGR, channels unequal
    cv2.imwrite(str(tmp_path / "a_grey.png"), grey)
    cv2.imwrite(str(tmp_path / "b_colour.png"), colour)
    cv2.imwrite(str(tmp_path / "c_small.png"), draw_face(5, rng, size=48))
    (tmp_path / "d_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    faces = _image_faces([tmp_path], count=4)
    # what FER2013's ingestion makes of a crop (OpenCV's BGR to grey, area resize), computed with OpenCV alone
    stored = [cv2.imread(str(tmp_path / f"{name}.png"), cv2.IMREAD_UNCHANGED)
              for name in ("a_grey", "b_colour", "c_small")]
    expected = [cv2.resize(image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (48, 48),
                           interpolation=cv2.INTER_AREA) for image in stored]
    assert faces.shape == (3, 48, 48) and faces.dtype == np.uint8
    for face, want in zip(faces, expected, strict=True):
        np.testing.assert_array_equal(face, want)
