"""The evaluate node on a tiny dataset whose test split holds copies of training images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.dataset_identity import (
    DatasetMismatchError,
    training_data_record,
)
from fer_pipeline.core.models import build_resnet34, model_config, save_model
from fer_pipeline.datasets import ModelFile
from fer_pipeline.pipelines.evaluate.nodes import evaluate_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model_trained_on(dataset, folder):
    """An untrained model file that records ``dataset`` as its training data."""
    config = {**model_config(stem="imagenet"), "training_data": training_data_record(dataset)}
    return save_model(folder / "resnet34.pt", build_resnet34(stem="imagenet"), config)


def test_evaluate_reports_the_split_with_and_without_leaked_duplicates(tmp_path):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 48, 48), dtype=np.uint8)
    labels = np.arange(40) % len(CLASSES)
    splits = np.array(["train"] * 20 + ["val"] * 8 + ["test"] * 12)
    images[28:31] = images[0:3]  # three test images are copies of training images ...
    labels[28:31] = labels[0:3]
    dataset = {"images": images, "labels": labels, "splits": splits,
               "source_ids": np.array([f"img_{i}.jpg" for i in range(40)]), "classes": np.array(CLASSES)}
    path = _model_trained_on(dataset, tmp_path)
    params = {"split": "test", "tta": "none", "batch_size": 16, "device": "cpu", "model_run_id": None}

    report, per_class, predictions, *_plots, metrics = evaluate_model(ModelFile(path), dataset, params)

    clean = report["without_leaked_duplicates"]
    assert report["n"] == 12 and (clean["n"], clean["excluded"]) == (9, 3)
    kept = ~predictions["source_id"].isin(["img_28.jpg", "img_29.jpg", "img_30.jpg"])
    expected = float((predictions["predicted"] == predictions["label"])[kept].mean())
    assert clean["accuracy"] == pytest.approx(expected)
    assert metrics["eval.test.without_leaked.accuracy"]["value"] == pytest.approx(expected)
    json.dumps(report)

    # ... and none of the val images: no second report, no metric
    report, *_rest, metrics = evaluate_model(ModelFile(path), dataset, {**params, "split": "val"})
    assert report["without_leaked_duplicates"] is None
    assert not any("without_leaked" in key for key in metrics)


def test_the_leaked_flag_stored_at_ingestion_decides_not_the_pixels(tmp_path):
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    labels = np.arange(30) % len(CLASSES)
    splits = np.array(["train"] * 10 + ["val"] * 8 + ["test"] * 12)
    flag = np.zeros(30, bool)
    flag[[18, 19]] = True  # no pixel copies anywhere: only the stored flag says these two leaked
    dataset = {"images": rng.integers(0, 256, (30, 48, 48), dtype=np.uint8), "labels": labels, "splits": splits,
               "source_ids": np.array([f"img_{i}.jpg" for i in range(30)]), "classes": np.array(CLASSES),
               "leaked": flag}
    path = _model_trained_on(dataset, tmp_path)
    params = {"split": "test", "tta": "none", "batch_size": 16, "device": "cpu", "model_run_id": None}
    report, _, predictions, *_plots, metrics = evaluate_model(ModelFile(path), dataset, params)
    clean = report["without_leaked_duplicates"]
    assert (clean["n"], clean["excluded"]) == (10, 2)
    kept = ~predictions["source_id"].isin(["img_18.jpg", "img_19.jpg"])
    assert clean["accuracy"] == pytest.approx(float((predictions["predicted"] == predictions["label"])[kept].mean()))
    assert report["fer_split"] == "PrivateTest" and report["n"] == 12


def test_a_model_that_records_no_dataset_is_refused_unless_allowed(tmp_path):
    rng = np.random.default_rng(2)
    dataset = {"images": rng.integers(0, 256, (21, 48, 48), dtype=np.uint8), "labels": np.arange(21) % 7,
               "splits": np.array(["train"] * 7 + ["val"] * 7 + ["test"] * 7),
               "source_ids": np.array([f"img_{i}.jpg" for i in range(21)]), "classes": np.array(CLASSES)}
    old = save_model(tmp_path / "old.pt", build_resnet34(stem="imagenet"), model_config(stem="imagenet"))
    params = {"split": "test", "tta": "none", "batch_size": 16, "device": "cpu", "model_run_id": None}
    with pytest.raises(DatasetMismatchError, match=f"the model {old} records no training dataset"):
        evaluate_model(ModelFile(old), dataset, params)
    report, *_ = evaluate_model(ModelFile(old), dataset, {**params, "allow_dataset_mismatch": True})
    assert report["dataset_check"]["status"] == "unrecorded_allowed" and report["n"] == 7

