"""End to end: `kedro run` on a generated contest CSV with FER+ votes, soft targets and contempt
as an eighth class, through every stage; then its reports, model and MLflow run."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.ingestion import label_set

from .conftest import make_project, run_kedro_in_process
from .core.ingestion.ferplus_files import noisy_rows, write_contest_files

pytestmark = pytest.mark.e2e

EIGHT = [*CLASSES, "contempt"]


@pytest.fixture(scope="module")
def ferplus_project(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("ferplus") / "fer_project")
    rows = noisy_rows({"Training": 24, "PublicTest": 6, "PrivateTest": 6}, seed=2, agreement=0.7, contempt_faces=6)
    csv_path, votes_path = write_contest_files(project / "data" / "contest", rows)
    params = ",".join([
        f"ingestion.source_path={csv_path}", f"ingestion.ferplus_votes_path={votes_path}",
        "ingestion.label_mode=ferplus_probability", "ingestion.ferplus_contempt=class", "ingestion.demo=null",
        "autoencoder.epochs=1", "training.config.epochs=2", "training.config.drw_epoch=1",
        "predict.demo_photos.n_photos=2",
    ])
    result = run_kedro_in_process(project, "run", "--env", "demo", "--params", params)
    if result.returncode != 0:
        pytest.fail(f"kedro run failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return project, result.stdout + result.stderr


def _json(project, rel):
    return json.loads((project / "data" / "demo" / rel).read_text())


def test_ingestion_reports_the_label_mode_and_every_exclusion(ferplus_project):
    project, _ = ferplus_project
    report = _json(project, "08_reporting/data_quality.json")
    assert report["label_mode"] == "ferplus_probability" and report["classes"] == EIGHT
    assert report["read"] == report["kept"] + report["quarantined"]
    assert report["reasons"]["ferplus_not_face"] == 3  # one row per split without an image name
    assert all(report["counts"][split]["contempt"] == 6 for split in ("train", "val", "test"))
    with np.load(project / "data/demo/03_primary/fer_dataset.npz") as npz:
        targets, labels = npz["targets"], npz["labels"]
    assert targets.shape == (len(labels), 8) and np.allclose(targets.sum(1), 1, atol=1e-5)
    assert (targets.max(1) < 1).any()  # real vote distributions, not one-hot


def test_every_stage_carries_the_eighth_class(ferplus_project):
    project, _ = ferplus_project
    assert _json(project, "04_feature/class_balance.json")["classes"] == EIGHT
    assert list(pd.read_csv(project / "data/demo/08_reporting/reconstruction_error.csv")["class"]) == EIGHT
    with np.load(project / "data/demo/05_model_input/training_set.npz") as npz:
        assert npz["targets"].shape == (len(npz["labels"]), 8)
        synthetic = npz["synthetic"]
        np.testing.assert_array_equal(npz["targets"][synthetic], np.eye(8)[npz["labels"][synthetic]])
    from fer_pipeline.core.models import load_model

    model, config = load_model(project / "data/demo/06_models/resnet34.pt")
    assert config["classes"] == EIGHT and config["num_classes"] == 8
    report = _json(project, "08_reporting/evaluation_metrics.json")
    assert [row["class"] for row in report["per_class"]] == EIGHT
    predictions = pd.read_csv(project / "data/demo/07_model_output/face_predictions.csv")
    assert "prob_contempt" in predictions.columns


def test_evaluation_scores_against_both_label_sets_in_one_run(ferplus_project):
    project, output = ferplus_project
    report = _json(project, "08_reporting/evaluation_metrics.json")
    assert set(report["label_sets"]) == {"fer2013", "ferplus_majority"}
    fer2013 = report["label_sets"]["fer2013"]
    assert fer2013["n"] == report["n"] and fer2013["excluded"] == 0
    with np.load(project / "data/demo/03_primary/fer_dataset.npz") as npz:
        dataset = {key: npz[key] for key in npz.files}
    majority = label_set(dataset, "ferplus_majority", EIGHT)[dataset["splits"] == "test"]
    assert report["label_sets"]["ferplus_majority"]["n"] == (majority >= 0).sum()
    assert "test against ferplus_majority labels" in output
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["fer_pipeline_demo"], output_format="list")
    metrics = runs[0].data.metrics
    for name in ("fer2013", "ferplus_majority"):
        assert metrics[f"eval.test.{name}.accuracy"] == pytest.approx(report["label_sets"][name]["accuracy"])
        assert f"eval.test.{name}.recall.contempt" in metrics
    assert runs[0].data.params["ingestion.label_mode"] == "ferplus_probability"
    table = pd.read_csv(project / "data/demo/07_model_output/test_predictions.csv", keep_default_na=False)
    assert (table["label_ferplus_majority"] != "").sum() == report["label_sets"]["ferplus_majority"]["n"]
    assert set(table["label_fer2013"]) <= set(CLASSES)
