"""End to end: `kedro run --env demo` on generated faces, then its reports and MLflow run."""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pandas as pd
import pytest

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.ingestion import DATASET_META_KEYS

from .conftest import make_project, run_kedro_in_process

pytestmark = pytest.mark.e2e


def _json(project, rel):
    return json.loads((project / rel).read_text())


def test_data_quality_report_reconciles(demo_project):
    report = _json(demo_project, "data/demo/08_reporting/data_quality.json")
    assert report["read"] == report["kept"] + report["quarantined"]
    assert report["quarantined"] == len(report["quarantine"]) == 0  # the generator writes no bad files
    assert report["kept"] == 420 + 140
    assert set(report["counts"]) == {"train", "val", "test"}
    assert sum(report["counts"]["train"].values()) == 420
    assert sum(report["counts"]["val"].values()) + sum(report["counts"]["test"].values()) == 140
    # FER2013's proportions: happy is the largest class, disgust the smallest
    train = report["counts"]["train"]
    assert max(train, key=train.get) == "happy" and min(train, key=train.get) == "disgust"
    assert {"groups", "cross_split_groups", "conflicting_label_groups"} <= set(report["duplicates"])


def test_class_balance_outputs(demo_project):
    balance = _json(demo_project, "data/demo/04_feature/class_balance.json")
    assert balance["classes"] == list(CLASSES)
    weights = np.array(balance["effective_number"])
    assert weights.sum() == pytest.approx(len(CLASSES))
    assert weights[CLASSES.index("disgust")] == weights.max()
    table = pd.read_csv(demo_project / "data/demo/08_reporting/class_balance.csv")
    assert set(table["split"]) == {"train", "val", "test"}
    assert (demo_project / "data/demo/08_reporting/class_balance.png").stat().st_size > 10_000


def test_autoencoder_outputs_compare_weighted_and_unweighted(demo_project):
    table = pd.read_csv(demo_project / "data/demo/08_reporting/reconstruction_error.csv")
    assert list(table["class"]) == list(CLASSES)
    assert {"mse_effective_number", "mse_none"} <= set(table.columns)
    with np.load(demo_project / "data/demo/05_model_input/training_set.npz") as npz:
        labels, synthetic = npz["labels"], npz["synthetic"]
    assert synthetic.any()  # the demo adds latent-SMOTE faces
    assert (labels[~synthetic].size) == 420  # every real training face, and only those
    for name in ("reconstruction_grid", "synthetic_faces", "augmentation_preview"):
        assert (demo_project / f"data/demo/08_reporting/{name}.png").exists()


def test_training_and_evaluation_outputs(demo_project):
    history = pd.read_csv(demo_project / "data/demo/07_model_output/training_history.csv")
    assert list(history["epoch"]) == [0, 1]  # 0-based, as in core.training.loop and the MLflow steps
    assert (demo_project / "data/demo/06_models/resnet34.pt").exists()
    report = _json(demo_project, "data/demo/08_reporting/evaluation_metrics.json")
    assert report["split"] == "test"
    assert 0.0 <= report["accuracy"] <= 1.0
    assert len(report["per_class"]) == len(CLASSES)
    per_class = pd.read_csv(demo_project / "data/demo/08_reporting/per_class_metrics.csv")
    assert list(per_class["class"]) == list(CLASSES)
    for name in ("confusion_matrix", "confusion_matrix_normalized", "reliability", "confident_mistakes", "training_curves"):
        assert (demo_project / f"data/demo/08_reporting/{name}.png").exists(), name


def test_predict_outputs(demo_project):
    table = pd.read_csv(demo_project / "data/demo/07_model_output/face_predictions.csv")
    faces = table[table["status"] == "face"]
    assert len(faces) >= 1
    probs = faces[[f"prob_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    assert list((demo_project / "data/demo/08_reporting/annotated_photos").glob("*.png"))


def test_mlflow_run_holds_flat_params_metric_histories_and_artifacts(demo_project):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{demo_project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fer_pipeline_demo")
    assert experiment is not None
    run = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])[-1]
    params = run.data.params
    assert params["ingestion.source_path"] == "data/demo/01_raw/fer2013"
    assert params["training.config.epochs"] == "2"
    assert params["augmentation.policy.crop_size"] == "44"
    metrics = run.data.metrics
    assert metrics["ingestion.read"] == 560
    assert "eval.test.accuracy" in metrics
    val_history = client.get_metric_history(run.info.run_id, "train.val_accuracy")
    assert len(val_history) == 2
    assert len(client.get_metric_history(run.info.run_id, "autoencoder.loss")) == 1
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/class_balance.png" in artifacts and "plots/confusion_matrix.png" in artifacts
    assert {a.path for a in client.list_artifacts(run.info.run_id, "model")} == {"model/resnet34.pt",
                                                                             "model/resnet34.onnx"}


def test_the_demo_writes_only_under_data_demo(demo_project):
    """conf/demo/globals.yml moves every catalog path: a demo run never touches a real run's files."""
    assert sorted(p.name for p in (demo_project / "data").iterdir()) == ["demo"]
    written = {p.relative_to(demo_project / "data" / "demo").parts[0] for p in (demo_project / "data/demo").iterdir()}
    assert {"01_raw", "03_primary", "06_models", "08_reporting"} <= written


def _runs(project, experiment_name):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(experiment_name)
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def test_evaluate_refuses_a_model_trained_on_another_dataset(demo_project, tmp_path):
    """The demo's model in a real project's place, beside another dataset: refused, then allowed."""
    from fer_pipeline.kedro_glue.datasets import NpzDataset

    project = make_project(tmp_path / "real")
    (project / "data/06_models").mkdir(parents=True)
    shutil.copy(demo_project / "data/demo/06_models/resnet34.pt", project / "data/06_models/resnet34.pt")
    demo = NpzDataset(filepath=(demo_project / "data/demo/03_primary/fer_dataset.npz").as_posix()).load()
    other = {key: value if key in DATASET_META_KEYS else value[1:] for key, value in demo.items()}  # one face fewer
    NpzDataset(filepath=(project / "data/03_primary/fer_dataset.npz").as_posix()).save(other)

    result = run_kedro_in_process(project, "run", "--pipelines", "evaluate")
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())
    assert f"the model {project / 'data/06_models/resnet34.pt'} was trained on dataset" in output
    assert "(420 train, 70 val, 70 test faces)" in output and "(420 train, 70 val, 69 test faces)" in output
    assert "--params evaluate.allow_dataset_mismatch=true" in output
    assert not (project / "data/08_reporting/evaluation_metrics.json").exists()
    assert [run.info.status for run in _runs(project, "fer_pipeline")] == ["FAILED"]  # never a finished run

    result = run_kedro_in_process(project, "run", "--pipelines", "evaluate", "--params",
                                  "evaluate.allow_dataset_mismatch=true")
    assert result.returncode == 0, result.stderr[-4000:]
    report = _json(project, "data/08_reporting/evaluation_metrics.json")
    assert report["dataset_check"]["status"] == "mismatch_allowed"
    latest = max(_runs(project, "fer_pipeline"), key=lambda run: run.info.start_time)
    assert latest.info.status == "FINISHED" and latest.data.tags["evaluate.dataset_check"] == "mismatch_allowed"


def test_an_ingestion_that_keeps_no_face_stops_and_writes_nothing(tmp_path):
    """FER2013's files without the <class>/ level: reasons counted, the previous dataset kept."""
    from PIL import Image

    from fer_pipeline.kedro_glue.datasets import NpzDataset

    project = make_project(tmp_path / "project")
    previous = project / "data/03_primary/fer_dataset.npz"
    NpzDataset(filepath=previous.as_posix()).save({
        "images": np.zeros((2, 48, 48), np.uint8), "labels": np.array([0, 1]), "splits": np.array(["train", "test"]),
        "source_ids": np.array(["a", "b"]), "classes": np.array(CLASSES),
    })
    before = previous.read_bytes()
    flat = tmp_path / "flat"
    flat.mkdir()
    for k in range(5):
        Image.fromarray(np.full((48, 48), 40 * k, np.uint8)).save(flat / f"Training_{k}.jpg")

    result = run_kedro_in_process(project, "run", "--pipelines", "ingestion", "--params",
                                  f"ingestion.source_path={flat}")
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())
    assert "ingestion kept no face of the train/val/test splits (read 5, kept 0" in output
    assert "quarantine reasons: not_in_class_folder 5" in output
    assert "Pipeline execution completed successfully" not in output
    assert previous.read_bytes() == before
    assert not (project / "data/08_reporting/data_quality.json").exists()
    assert [run.info.status for run in _runs(project, "fer_pipeline")] == ["FAILED"]


def _latest_run(project):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fer_pipeline_demo")
    run = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])[0]
    return client, run


@pytest.mark.parametrize(
    ("pipeline", "params", "histories"),
    [
        ("autoencoder", "autoencoder.epochs=2", {"autoencoder.loss": 2, "autoencoder.recon_mse_disgust": 2,
                                                  "autoencoder_unweighted.loss": 2}),
        ("augmentation", "augmentation.sampler=class_balanced", {}),
        ("training", "training.config.epochs=2,training.config.steps_per_epoch=2,training.config.resume=false",
         {"train.train_loss": 2, "train.val_loss": 2, "train.val_accuracy": 2, "train.val_macro_f1": 2,
          "train.val_balanced_accuracy": 2, "train.lr": 2, "train.epoch_seconds": 2, "train.images_per_s": 2}),
    ],
)
def test_each_stage_runs_alone_and_is_tracked(demo_project, pipeline, params, histories):
    result = run_kedro_in_process(demo_project, "run", "--env", "demo", "--pipelines", pipeline, "--params", params)
    assert result.returncode == 0, result.stderr[-4000:]
    client, run = _latest_run(demo_project)
    assert f"--pipeline={pipeline}" in run.data.tags["kedro_command"]  # kedro-mlflow's spelling, for --pipelines
    for name, steps in histories.items():
        assert len(client.get_metric_history(run.info.run_id, name)) == steps, name
    if pipeline == "augmentation":
        shares = [run.data.metrics[f"augmentation.sampled_share.{c}"] for c in CLASSES]
        assert shares == pytest.approx([1 / len(CLASSES)] * len(CLASSES))  # class-balanced sampler
    # a run that trains logs the model to serve (tests/test_serving.py); the others log none
    assert _logged_models(client, run) == (["emotion_model"] if pipeline == "training" else [])


def _logged_models(client, run) -> list[str]:
    found = client.search_logged_models([run.info.experiment_id])
    return [model.name for model in found if model.source_run_id == run.info.run_id]


def test_evaluate_alone_with_flip_tta_on_a_model_logged_by_run_id(demo_project):
    """`--pipelines evaluate` alone, its TTA and its model chosen by parameters; one run for both."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{demo_project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fer_pipeline_demo")
    trained = [r for r in client.search_runs([experiment.experiment_id])
               if client.list_artifacts(r.info.run_id, "model")]
    source = trained[-1].info.run_id
    local = demo_project / "data/demo/06_models/resnet34.pt"
    local.rename(local.with_suffix(".moved"))  # prove the model comes from MLflow, not the local file
    try:
        result = run_kedro_in_process(demo_project, "run", "--env", "demo", "--pipelines", "evaluate",
                                      "--params", f"evaluate.tta=flip,evaluate.model_run_id={source}")
    finally:
        local.with_suffix(".moved").rename(local)
    assert result.returncode == 0, result.stderr[-4000:]
    report = _json(demo_project, "data/demo/08_reporting/evaluation_metrics.json")
    assert report["tta"] == "flip" and report["training_run_id"] == source
    assert report["dataset_check"]["status"] == "match"  # the model records the dataset it was trained on
    client, run = _latest_run(demo_project)
    assert run.data.tags["training_run_id"] == source and run.data.tags["evaluate.dataset_check"] == "match"
    assert _logged_models(client, run) == []  # evaluating trains nothing, so serves nothing new


def test_evaluate_without_a_model_says_how_to_get_one(tmp_path):
    from fer_pipeline.kedro_glue.datasets import NpzDataset

    project = make_project(tmp_path / "no_model")
    NpzDataset(filepath=(project / "data/demo/03_primary/fer_dataset.npz").as_posix()).save({
        "images": np.zeros((2, 48, 48), np.uint8), "labels": np.array([0, 1]), "splits": np.array(["test", "test"]),
        "source_ids": np.array(["a", "b"]), "classes": np.array(CLASSES),
    })
    result = run_kedro_in_process(project, "run", "--env", "demo", "--pipelines", "evaluate")
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())  # rich wraps long lines
    assert f"No trained model at {project / 'data/demo/06_models/resnet34.pt'}" in output
    assert "evaluate.model_run_id=<MLflow run id>" in output


def test_a_kedro_run_in_this_process_leaves_the_process_as_it_found_it(demo_project):
    """``run_kedro_in_process``, which most runs of these tests use: the run's log is in its output,
    and the worker's state is what it was: kedro-mlflow's run ended, MLflow's URIs and experiment,
    the working directory, the environment, the logging handlers, the random generators
    (the run trains, which seeds them); the warning filters from the second run on (the first
    imports libraries, which add their own)."""
    import logging
    import random
    import warnings

    import mlflow.tracking.fluent
    import torch

    def state():
        return (os.getcwd(), dict(os.environ), mlflow.get_tracking_uri(), mlflow.tracking.fluent._active_experiment_id,
                list(logging.getLogger().handlers), logging.getLogger("fer_pipeline").level, sys.excepthook,
                sys.displayhook, sys.path[:], random.random(), np.random.random(), torch.rand(1).item())

    run = ("run", "--env", "demo", "--pipelines", "training", "--params",
           "training.config.epochs=1,training.config.steps_per_epoch=1,training.config.resume=false")
    def seed():
        random.seed(5)
        np.random.seed(5)
        torch.manual_seed(5)

    seed()
    first = run_kedro_in_process(demo_project, *run)
    assert first.returncode == 0, first.stderr[-4000:]
    assert "Pipeline execution completed successfully" in " ".join((first.stdout + first.stderr).split())
    assert mlflow.active_run() is None
    after_first = state()
    seed()
    assert after_first == state()  # as it was before the run: the draws the same as after seeding

    filters = list(warnings.filters)
    second = run_kedro_in_process(demo_project, *run)
    assert list(warnings.filters) == filters and mlflow.active_run() is None
    assert logging.getLogger("fer_pipeline").getEffectiveLevel() == logging.INFO  # as Kedro sets it, once
    assert "fer_pipeline.core.training.loop: epoch 0" in second.stderr  # so a later run still logs at INFO


def test_a_warning_in_a_run_in_this_process_reaches_its_output_as_in_a_kedro_process(demo_project, monkeypatch):
    """A library's warning during the run is logged (``py.warnings``) into the run's output, where
    pytest would have recorded it: the checks for "no warning" in the output can fail."""
    from fer_pipeline.kedro_glue.datasets import NpzDataset

    load = NpzDataset.load

    def load_and_warn(self):
        import warnings

        warnings.warn("a library complains", UserWarning, stacklevel=1)
        return load(self)

    monkeypatch.setattr(NpzDataset, "load", load_and_warn)  # the catalog makes its datasets in each run
    result = run_kedro_in_process(demo_project, "run", "--env", "demo", "--pipelines", "evaluate")
    assert "WARNING py.warnings" in result.stderr and "a library complains" in result.stderr
