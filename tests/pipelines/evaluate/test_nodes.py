"""The evaluate node on a tiny dataset whose test split holds copies of training images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.evaluation.dataset_identity import (
    DatasetMismatchError,
    training_data_record,
)
from fer_pipeline.core.models import build_model, build_resnet34, model_config, save_model
from fer_pipeline.kedro_glue.datasets import FigureFolderDataset, ModelFile
from fer_pipeline.pipelines.evaluate.nodes import evaluate_external, evaluate_model
from tests.core.external_sets import CROP_MAP, write_crops, write_photos

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


# ---------------------------------------------------------------------------- external sets

EXTERNAL_PARAMS = {"split": "test", "tta": "none", "batch_size": 8, "device": "cpu", "model_run_id": None}


def test_no_external_sets_is_an_empty_report_and_the_model_is_not_read(tmp_path):
    missing = ModelFile(tmp_path / "never_trained.pt")
    for sets in ({}, None):
        assert evaluate_external(missing, {**EXTERNAL_PARAMS, "external_sets": sets}, {"margin": 0.2}) == ({}, {}, {})
    assert evaluate_external(missing, EXTERNAL_PARAMS, {"margin": 0.2}) == ({}, {}, {})
    with pytest.raises(ValueError, match="'external_set' \\(did you mean 'external_sets'\\?\\)"):
        evaluate_external(missing, {**EXTERNAL_PARAMS, "external_set": {}}, {"margin": 0.2})


def test_external_sets_report_metrics_and_one_figure_per_set(tmp_path):
    torch.manual_seed(0)
    config = model_config(arch="resnet18", stem="imagenet")
    path = save_model(tmp_path / "resnet18.pt", build_model(config), config)
    sets = {"ckplus48": {"path": str(write_crops(tmp_path / "CK+48")), "kind": "crops", "class_map": CROP_MAP},
            "photos": {"path": str(write_photos(tmp_path / "photos")), "kind": "photos"}}
    params = {**EXTERNAL_PARAMS, "external_sets": sets}

    report, metrics, figures = evaluate_external(ModelFile(path), params, {"margin": 0.2})

    assert list(report) == ["ckplus48", "photos"]
    crops, photos = report["ckplus48"], report["photos"]
    assert (crops["files"], crops["scored"], crops["no_face"]) == (9, 7, 0)
    assert crops["dropped_by_class_map"] == {"contempt": 2}
    assert (photos["files"], photos["scored"], photos["no_face"], photos["multiple_faces"]) == (4, 3, 1, 1)
    assert crops["model"] == path.as_posix()
    for entry in report.values():  # the counting, whatever the untrained model predicts
        counts = entry["label_counts"]
        assert [sum(entry["confusion"][entry["classes"].index(c)]) for c in counts] == list(counts.values())
        assert sum(row[-1] for row in entry["confusion"]) == entry["no_face"]
        trace = sum(entry["confusion"][k][k] for k in range(len(entry["classes"])))
        assert entry["metrics"]["accuracy"] == pytest.approx(trace / entry["metrics"]["n"])
    assert photos["confusion"][CLASSES.index("angry")][-1] == 1  # the faceless photo

    expected = {f"eval.external.{name}.{key}" for name in sets
                for key in ("accuracy", "macro_f1", "balanced_accuracy", "no_face_rate")}
    expected |= {f"eval.external.ckplus48.recall.{c}" for c in ("angry", "happy", "sad")}
    expected |= {f"eval.external.photos.recall.{c}" for c in ("angry", "happy", "sad")}
    assert set(metrics) == expected
    assert metrics["eval.external.photos.no_face_rate"] == {"value": pytest.approx(0.25), "step": 0}
    assert metrics["eval.external.ckplus48.accuracy"]["value"] == pytest.approx(crops["metrics"]["accuracy"])
    json.dumps(report)

    assert list(figures) == ["ckplus48", "photos"]
    ax = figures["photos"].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [*CLASSES, "no_face"]
    assert ax.get_title().startswith("photos (photos): accuracy")
    folder = FigureFolderDataset(path=(tmp_path / "08_reporting" / "external_confusion").as_posix())
    folder.save(figures)
    assert sorted(folder.load()) == ["ckplus48", "photos"]
    folder.save({})  # no sets any more: no stale figure, the folder stays (MLflow logs it)
    assert folder.load() == {} and (tmp_path / "08_reporting" / "external_confusion").is_dir()

