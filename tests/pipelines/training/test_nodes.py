"""Training node: a loadable model bundle with the class names, the history, the summary, metrics."""

from __future__ import annotations

import pytest
import torch

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.models import load_model
from fer_pipeline.pipelines.training.nodes import train_resnet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bundle_history_summary_curves_and_metrics(tiny_dataset, tiny_training_params, tmp_path):
    train = tiny_dataset["splits"] == "train"
    training_set = {"images": tiny_dataset["images"][train], "labels": tiny_dataset["labels"][train],
                    "synthetic": train[train] & False, "classes": tiny_dataset["classes"]}
    bundle, history, summary, curves, metrics = train_resnet(
        training_set, tiny_dataset, tiny_training_params, {"sampler": "shuffle", "policy": None})
    assert bundle["config"]["classes"] == list(CLASSES) and bundle["config"]["mlflow_run_id"] is None  # no run
    torch.save(bundle, tmp_path / "resnet34.pt")
    model, config = load_model(tmp_path / "resnet34.pt")
    assert config["arch"] == "resnet18" and model(torch.zeros(1, 1, 48, 48)).shape == (1, 7)
    assert list(history["epoch"]) == [0, 1] and "val_macro_f1" in history
    assert summary["select_metric"] == "macro_f1" and summary["epochs_run"] == 2
    assert summary["train_images"] == int(train.sum()) and summary["synthetic_images"] == 0
    assert summary["best_val_metrics"] == {k[4:]: history.loc[summary["best_epoch"], k]
                                           for k in history if k.startswith("val_")}
    assert [row["step"] for row in metrics["train.val_macro_f1"]] == [0, 1]
    assert metrics["best.macro_f1"][0]["step"] == summary["best_epoch"]
    assert metrics["device.threads"][0]["value"] >= 1
    assert len(curves.axes) == 2


def test_the_onnx_export_is_checked_on_validation_faces(tiny_dataset, tmp_path, monkeypatch):
    from fer_pipeline.core import onnx_export
    from fer_pipeline.core.models import build_resnet34, model_config, save_model
    from fer_pipeline.core.onnx_export import OnnxExportError
    from fer_pipeline.core.onnx_model import onnx_model_from_bytes
    from fer_pipeline.kedro_glue.datasets import ModelFile
    from fer_pipeline.pipelines.training.nodes import export_onnx

    torch.manual_seed(0)
    config = model_config(arch="resnet18", stem="imagenet")
    path = save_model(tmp_path / "resnet34.pt", build_resnet34(arch="resnet18", stem="imagenet"), config)
    data, metrics = export_onnx(ModelFile(path), tiny_dataset)
    assert onnx_model_from_bytes(data).config == config
    assert metrics["onnx.faces"]["value"] == min(512, int((tiny_dataset["splits"] == "val").sum()))
    assert metrics["onnx.top1_agreement"]["value"] == 1.0 and metrics["onnx.max_abs_diff"]["value"] < 1e-3
    other = onnx_export.onnx_bytes(build_resnet34(arch="resnet18", stem="imagenet"), config)  # other weights
    monkeypatch.setattr(onnx_export, "onnx_bytes", lambda *args: other)
    with pytest.raises(OnnxExportError, match="does not agree with PyTorch"):
        export_onnx(ModelFile(path), tiny_dataset)
