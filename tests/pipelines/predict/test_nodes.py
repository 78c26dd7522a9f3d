"""Predict nodes: demo photos drawn, faces found and classified, unreadable files listed, not fatal."""

from __future__ import annotations

import logging

import pytest
import torch

from fer_pipeline.core.models import build_resnet34, model_config, save_model
from fer_pipeline.datasets import ModelFile
from fer_pipeline.pipelines.predict.nodes import predict_emotions, prepare_photos

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_photos_to_a_table_of_faces_annotated_images_and_metrics(tmp_path, caplog):
    photos = prepare_photos({"inputs": str(tmp_path / "photos"), "demo_photos": {"n_photos": 2, "seed": 0}})
    assert photos == {"inputs": [(tmp_path / "photos").as_posix()]}
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
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


def test_no_photos_is_a_warning_not_an_error(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert prepare_photos({"inputs": [str(tmp_path / "absent")], "demo_photos": None}) == {"inputs": []}
    assert "No photos at" in caplog.text
