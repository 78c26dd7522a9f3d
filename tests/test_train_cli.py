"""Training in two processes end to end (gloo on CPU): `kedro run` with
`training.distributed.nproc_per_node=2`, and the cluster route, `torchrun ... -m
fer_pipeline.commands.train` followed by `kedro run --pipelines evaluate` on the model it wrote."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fer_pipeline.commands import train as train_cli
from fer_pipeline.core.models import load_model
from tests.conftest import make_project, run_kedro, run_kedro_in_process

pytestmark = pytest.mark.e2e

TORCHRUN = Path(sys.executable).with_name("torchrun")
#: One epoch of two steps (of the demo's 64-face batches, 32 a process): what the tests check is the two
#: processes, their logs and files, not what the model learns.
ONE_EPOCH = ["training.config.epochs=1", "training.config.steps_per_epoch=2"]


@pytest.fixture()
def trained_inputs_project(demo_project, tmp_path) -> Path:
    """A fresh project holding the demo run's training inputs (dataset and training set) only."""
    project = make_project(tmp_path / "fer_project")
    for layer in ("03_primary", "05_model_input"):
        shutil.copytree(demo_project / "data" / "demo" / layer, project / "data" / "demo" / layer)
    return project


def _mlflow_client(project: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def test_kedro_run_trains_in_two_worker_processes(trained_inputs_project):
    project = trained_inputs_project
    result = run_kedro(project, "run", "--env", "demo", "--pipelines", "training", "--params",
                       ",".join([*ONE_EPOCH, "training.distributed.nproc_per_node=2"]))
    assert result.returncode == 0, result.stderr[-6000:]
    output = result.stdout + result.stderr
    assert "training in 2 worker processes (gloo backend)" in " ".join(output.split())
    assert "[rank 0] INFO fer_pipeline.core.training.loop: epoch 0:" in output and "[rank 1] INFO" not in output
    client = _mlflow_client(project)
    experiment = client.get_experiment_by_name("fer_pipeline_demo")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["training.distributed.nproc_per_node"] == "2"
    assert run.data.metrics["device.processes"] == 2
    # rank 0's epoch history reached MLflow through the Kedro process
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train.val_macro_f1")] == [0]
    model, config = load_model(project / "data" / "demo" / "06_models" / "resnet34.pt")
    assert config["training_data"]["split_sizes"]


def test_torchrun_trains_and_the_evaluate_pipeline_scores_its_model(trained_inputs_project):
    project = trained_inputs_project
    out = project / "data" / "demo" / "06_models" / "resnet34.pt"
    env = {**os.environ, "DO_NOT_TRACK": "true", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", "-m", "fer_pipeline.commands.train", "--env", "demo",
         "--conf", str(project / "conf"), *(arg for key in ONE_EPOCH for arg in ("--set", key)),
         "--set", "training.config.checkpoint_dir=null"],
        cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-6000:]
    assert f"wrote {out.relative_to(project)}" in result.stdout
    summary = json.loads(out.with_name("resnet34_summary.json").read_text())
    assert summary["device"]["processes"] == 2
    assert len(out.with_name("resnet34_history.csv").read_text().splitlines()) == 2  # header + 1 epoch
    evaluated = run_kedro_in_process(project, "run", "--env", "demo", "--pipelines", "evaluate")
    assert evaluated.returncode == 0, evaluated.stderr[-6000:]
    report = json.loads((project / "data" / "demo" / "08_reporting" / "evaluation_metrics.json").read_text())
    assert report["n"] == 70 and 0.0 <= report["accuracy"] <= 1.0  # the demo test split, scored


def test_fer_train_names_missing_inputs_and_bad_parameters(tmp_path, capsys):
    with pytest.raises(SystemExit, match="--training-set .* does not exist: run `kedro run --to-nodes"):
        train_cli.main(["--training-set", str(tmp_path / "none.npz"), "--dataset", str(tmp_path / "none.npz")])
    with pytest.raises(SystemExit, match="no environment 'nope'"):
        train_cli.main(["--env", "nope"])
    with pytest.raises(SystemExit, match="no parameter group 'trainin'"):
        train_cli.main(["--set", "trainin.config.epochs=1"])
