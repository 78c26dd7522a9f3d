"""The runner without Kedro and `kedro run` score a model with one protocol: on the demo run's
model and dataset, the runner's evaluation gives the evaluate node's figures."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from fer_pipeline.core.models import load_model
from fer_pipeline.params import apply_sets, load_environment_parameters
from fer_pipeline.runner.dataset_loading import read_npz
from fer_pipeline.runner.records import PipelineRun
from fer_pipeline.runner.run import run_evaluation
from tests.conftest import make_project, run_kedro_in_process

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def evaluated_project(demo_project, tmp_path_factory):
    """The demo's dataset and model in a project of their own (other tests retrain the demo
    project's model), scored there by `kedro run --pipelines evaluate`."""
    project = make_project(tmp_path_factory.mktemp("same_evaluation") / "fer_project")
    for layer in ("03_primary", "06_models"):
        shutil.copytree(demo_project / "data" / "demo" / layer, project / "data" / "demo" / layer)
    result = run_kedro_in_process(project, "run", "--env", "demo", "--pipelines", "evaluate")
    assert result.returncode == 0, result.stderr[-4000:]
    return project


def _runner_evaluation(project, tmp_path, sets):
    params = apply_sets(load_environment_parameters(project / "conf", "demo"), sets)
    data = project / "data" / "demo"
    model, config = load_model(data / "06_models" / "resnet34.pt")
    dataset = read_npz(data / "03_primary" / "fer_dataset.npz")
    run = PipelineRun(params, data, tmp_path / "out", tmp_path / "work", torch.device("cpu"), [])
    (tmp_path / "out").mkdir(exist_ok=True)
    trained = SimpleNamespace(model=model, config=config, train_config={"select_metric": "macro_f1"}, best_epoch=1)
    run_evaluation(run, trained, dataset)
    return run.metrics, params["evaluate"]


def test_the_runner_scores_the_demo_model_as_kedro_run_did(evaluated_project, tmp_path, runner_log_handlers_removed):
    node_report = json.loads((evaluated_project / "data/demo/08_reporting/evaluation_metrics.json").read_text())
    metrics, evaluate = _runner_evaluation(evaluated_project, tmp_path, [])
    runner_report = metrics["evaluation"][evaluate["split"]][evaluate["tta"]]
    assert set(metrics["evaluation"]) == {evaluate["split"]}  # a fixed mode: the split alone
    for key in ("n", "accuracy", "macro_f1", "balanced_accuracy", "top2_accuracy", "confusion"):
        assert runner_report[key] == node_report[key], key
    assert runner_report["per_class"] == node_report["per_class"]
    assert runner_report["without_leaked_duplicates"] == node_report["without_leaked_duplicates"]


def test_choosing_the_tta_on_val_scores_both_splits_and_reports_the_chosen_mode(evaluated_project, tmp_path,
                                                                               runner_log_handlers_removed):
    metrics, _ = _runner_evaluation(evaluated_project, tmp_path, ["evaluate.tta=choose_on_val",
                                                             "evaluate.tta_candidates=[none, flip]"])
    val, test = metrics["evaluation"]["val"], metrics["evaluation"]["test"]
    assert set(val) == set(test) == {"none", "flip"}
    chosen = metrics["selection"]["tta_selected_on_val"]
    assert chosen == max(("none", "flip"), key=lambda mode: val[mode]["macro_f1"])
    assert metrics["headline"][f"test_{chosen}_accuracy"] == test[chosen]["accuracy"]
    with pytest.raises(ValueError, match="choose_on_val"):
        _runner_evaluation(evaluated_project, tmp_path, ["evaluate.tta=ten_crops"])
