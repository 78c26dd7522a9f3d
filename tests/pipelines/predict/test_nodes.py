"""Predict nodes: demo photos drawn, faces found and classified, unreadable files listed, not fatal;
videos among the inputs: per-frame rows, annotated videos moved into their folder, video metrics."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_pipeline.core.models import build_resnet34, model_config, save_model
from fer_pipeline.kedro_glue.datasets import ModelFile, VideoFolderDataset
from fer_pipeline.pipelines.predict.nodes import (
    predict_emotions,
    predict_videos,
    prepare_photos,
    prepare_videos,
)
from tests.core.video_clips import read_video, write_clip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_photos_to_a_table_of_faces_annotated_images_and_metrics(tmp_path, caplog):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    photos = prepare_photos({"inputs": str(tmp_path / "photos"), "demo_photos": {"n_photos": 2, "seed": 0}})
    assert [Path(p).name for p in photos["inputs"]] == ["broken.jpg", "demo_no_face.jpg", "demo_photo_0.jpg",
                                                        "demo_photo_1.png"]
    torch.manual_seed(0)
    model = save_model(tmp_path / "resnet34.pt", build_resnet34(arch="resnet18", stem="imagenet"),
                       model_config(arch="resnet18", stem="imagenet"))
    params = {"margin": 0.2, "tta": "none", "device": "cpu"}
    with caplog.at_level(logging.WARNING):
        table, annotated, metrics = predict_emotions(photos, ModelFile(model), params)
    assert metrics["predict.files"]["value"] == 4  # two photos, the blank one, the broken file
    assert metrics["predict.faces"]["value"] == 3 and metrics["predict.no_face"]["value"] == 1
    assert metrics["predict.unreadable"]["value"] == 1 and "broken.jpg" in caplog.text
    faces = table[table["status"] == "face"]
    assert len(faces) == 3 and faces[[f"prob_{c}" for c in ("angry", "happy")]].notna().all().all()
    assert set(annotated) == {"demo_photo_0", "demo_photo_1", "demo_no_face"}


def test_photo_folders_are_searched_as_fer_predict_does(tmp_path, caplog):
    from tests.core.photo_files import TIFF_FOLDER_IMAGES, write_tiff_folder

    folder = write_tiff_folder(tmp_path / "jaffe")
    with caplog.at_level(logging.WARNING):
        photos = prepare_photos({"inputs": [str(folder), str(tmp_path / "absent")], "demo_photos": None})
    assert photos == {"inputs": [(folder / name).as_posix() for name in TIFF_FOLDER_IMAGES]}  # TIFFs, subfolders
    assert f"skipped 1 file that is not an image or a video: {folder / 'README.txt'}" in caplog.text
    assert "No photos at" in caplog.text and "absent" in caplog.text  # a missing input among others: said too
    torch.manual_seed(0)
    model = save_model(tmp_path / "resnet34.pt", build_resnet34(arch="resnet18"), model_config(arch="resnet18"))
    table, annotated, _ = predict_emotions(photos, ModelFile(model), {"margin": 0.2, "tta": "none", "device": "cpu"})
    assert set(table["file"]) == {str(folder / name) for name in TIFF_FOLDER_IMAGES}
    assert sorted(annotated) == ["KA.AN1.39", "KA.AN1.40", "face", "face_2"]  # dotted names kept whole, none lost


def test_no_photos_is_a_warning_not_an_error(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert prepare_photos({"inputs": [str(tmp_path / "absent")], "demo_photos": None}) == {"inputs": []}
    assert "No photos at" in caplog.text


def test_videos_among_the_inputs_give_frame_rows_annotated_videos_and_metrics(tmp_path, caplog):
    photos_dir = tmp_path / "inputs"
    photos_dir.mkdir()
    write_clip(photos_dir / "call.avi", frames=6)
    (photos_dir / "broken.mp4").write_bytes(b"not a video" * 20)
    (photos_dir / "photo.png").write_bytes(b"not read here")
    params = {"inputs": [str(photos_dir), str(photos_dir / "call.avi")], "demo_photos": None}
    assert prepare_photos(params) == {"inputs": [(photos_dir / "photo.png").as_posix()]}  # videos are not photos
    inputs = prepare_videos(params)
    assert [Path(v).name for v in inputs["videos"]] == ["broken.mp4", "call.avi"]
    torch.manual_seed(0)
    model = save_model(tmp_path / "resnet34.pt", build_resnet34(arch="resnet18"), model_config(arch="resnet18"))
    params = {"margin": 0.2, "tta": "none", "device": "cpu", "every_n_frames": 2}
    with caplog.at_level(logging.WARNING):
        table, annotated, metrics = predict_videos(inputs, ModelFile(model), params)
    assert "broken.mp4" in caplog.text
    value = {name: m["value"] for name, m in metrics.items()}
    assert value["predict.video_files"] == 2 and value["predict.video_unreadable"] == 1
    assert value["predict.video_frames"] == 6 and value["predict.video_frames_processed"] == 3
    assert value["predict.video_faces"] == 6 and value["predict.video_fps"] > 0  # 2 faces x frames 0, 2, 4
    assert sorted(table["frame"].unique()) == [0, 2, 4] and table["track_id"].nunique() == 2

    folder = VideoFolderDataset(str(tmp_path / "07_model_output" / "annotated_videos"))
    (tmp_path / "07_model_output" / "annotated_videos").mkdir(parents=True)
    (tmp_path / "07_model_output" / "annotated_videos" / "stale.mp4").write_bytes(b"old run")
    folder.save(annotated)
    saved = folder.load()
    assert list(saved) == ["call"] and len(read_video(saved["call"])) == 6  # stale video removed
    assert not annotated["call"].exists()  # moved, not copied


def test_no_videos_need_no_model(tmp_path):
    table, annotated, metrics = predict_videos({"videos": []}, ModelFile(tmp_path / "none.pt"), {})
    assert table.empty and annotated == {} and metrics["predict.video_frames"]["value"] == 0


def test_predict_detector_yunet_finds_the_demo_photos_faces(tmp_path):
    photos = prepare_photos({"inputs": str(tmp_path / "photos"), "demo_photos": {"n_photos": 2, "seed": 0}})
    torch.manual_seed(0)
    model = save_model(tmp_path / "resnet34.pt", build_resnet34(arch="resnet18", stem="imagenet"),
                       model_config(arch="resnet18", stem="imagenet"))
    params = {"margin": 0.2, "tta": "none", "device": "cpu", "detector": "yunet"}
    table, _, metrics = predict_emotions(photos, ModelFile(model), params)
    assert metrics["predict.faces"]["value"] == 3 and metrics["predict.no_face"]["value"] == 1


def test_the_backend_parameter_runs_the_model_with_onnx_runtime(tmp_path):
    """predict.backend onnxruntime: the .pt converted when it loads; the same faces and emotions."""
    from fer_pipeline.pipelines.predict.nodes import _recognizer

    photos = prepare_photos({"inputs": str(tmp_path / "photos"), "demo_photos": {"n_photos": 2, "seed": 0}})
    torch.manual_seed(0)
    model = ModelFile(save_model(tmp_path / "resnet34.pt", build_resnet34(arch="resnet18", stem="imagenet"),
                                 model_config(arch="resnet18", stem="imagenet")))
    params = {"margin": 0.2, "tta": "flip", "device": "cpu", "amp": "off"}
    assert _recognizer(model, {**params, "backend": "onnxruntime"}).backend == "onnxruntime"
    assert _recognizer(model, params).backend == "torch"  # the default
    by_torch, _, _ = predict_emotions(photos, model, {**params, "backend": "torch"})
    by_onnx, _, _ = predict_emotions(photos, model, {**params, "backend": "onnxruntime"})
    probabilities = [column for column in by_torch if column.startswith("prob_")] + ["confidence"]
    assert len(by_torch) == 4 and by_onnx.drop(columns=probabilities).equals(by_torch.drop(columns=probabilities))
    faces = by_torch["status"] == "face"
    np.testing.assert_allclose(by_onnx[probabilities][faces].to_numpy(float),
                               by_torch[probabilities][faces].to_numpy(float), atol=1e-5)
