"""Every stage's parameters, the dataset and the model are checked before a run's first node
(``kedro_glue.hooks.ParameterChecks``), and ``kedro run`` ends a user's mistake with its message
alone (``fer_pipeline.cli``): exit status 2, no traceback, nothing written, no MLflow run."""

from __future__ import annotations

import copy
import sqlite3
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from kedro.framework.hooks import hook_impl
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline

from fer_pipeline.core.config import ParameterError
from fer_pipeline.kedro_glue.datasets import TorchModelDataset
from fer_pipeline.kedro_glue.hooks import ParameterChecks
from tests.conftest import REPO, make_project, run_kedro, run_kedro_in_process

STAGES = ("ingestion", "class_balance", "autoencoder", "augmentation", "training", "evaluate", "predict",
          "package_model", "serving")
#: where a typo goes in each stage's parameters (params name, path of the dict holding it)
TYPO_PLACES = [("ingestion", ()), ("autoencoder", ()), ("training", ()), ("training", ("config",)),
               ("training", ("distributed",)), ("evaluate", ()), ("predict", ()), ("serving", ())]


def _params(env: str = "base") -> dict:
    from kedro.config import OmegaConfigLoader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loader = OmegaConfigLoader(str(REPO / "conf"), base_env="base", default_run_env="base", env=env,
                                   merge_strategy={"parameters": "soft"})
        return copy.deepcopy(loader["parameters"])


def _pipeline(*stages: str) -> Pipeline:
    import importlib

    from fer_pipeline.pipeline_registry import grouped

    # each stage in its namespace, as the registry builds it (``evaluate.evaluate_model``)
    return sum((grouped(stage, importlib.import_module(f"fer_pipeline.pipelines.{stage}").create_pipeline())
                for stage in stages or STAGES), Pipeline([]))


def _catalog(params: dict, **datasets) -> DataCatalog:
    return DataCatalog({**{f"params:{name}": MemoryDataset(value) for name, value in params.items()}, **datasets})


def _check(params: dict, *stages: str, **datasets) -> None:
    ParameterChecks().before_pipeline_run({"env": "base"}, _pipeline(*stages), _catalog(params, **datasets))


@pytest.fixture
def params(tmp_path) -> dict:
    """conf/base's parameters, with a source folder that exists."""
    params = _params()
    params["ingestion"]["source_path"] = str(tmp_path)
    return params


@pytest.mark.parametrize("env", ["demo", "cpu"])
def test_the_projects_own_parameters_pass(params, env):
    _check(params)
    other = _params(env)
    if not other["ingestion"]["demo"]:
        other["ingestion"]["source_path"] = params["ingestion"]["source_path"]
    _check(other)


@pytest.mark.parametrize(("stage", "where"), TYPO_PLACES)
def test_an_unknown_key_of_any_stage_stops_the_run(params, stage, where):
    target = params[stage]
    for key in where:
        target = target[key]
    target["tpyo"] = 1
    with pytest.raises(ParameterError, match=rf"'tpyo'.*params:{stage} in conf/base/parameters_{stage}.yml"):
        _check(params)


def test_a_bad_value_names_the_parameter_and_its_choices(params):
    params["evaluate"]["tta"] = "tenfold"
    with pytest.raises(ParameterError, match=r"evaluate\.tta .*none, flip, ten_crop, choose_on_val; got 'tenfold'"):
        _check(params, "evaluate")
    _check(params, "ingestion", "training")  # stages that are not in the run are not looked at


@pytest.mark.parametrize("stage", ["predict", "serving"])
def test_an_unknown_face_detector_stops_the_run(params, stage):
    params[stage]["detector"] = "yunett"
    with pytest.raises(ParameterError, match=rf"{stage}\.detector must be one of haar, yunet, got 'yunett' "
                                             r"\(did you mean 'yunet'\?\)"):
        _check(params, stage)
    params[stage]["detector"] = "yunet"
    _check(params, stage)


def test_a_missing_source_stops_the_run_unless_the_demo_draws_it(params, tmp_path):
    params["ingestion"]["source_path"] = str(tmp_path / "nowhere")
    with pytest.raises(ParameterError, match=r"No dataset at '.*nowhere' \(ingestion.source_path\).*--params "
                                             r"ingestion.source_path="):
        _check(params, "ingestion")
    _check(params, "evaluate")  # a run without ingestion does not read it
    params["ingestion"]["demo"] = {"n_train": 70, "n_test": 28, "seed": 0}
    _check(params, "ingestion")


def test_a_missing_model_stops_evaluate_and_predict_without_training(params, tmp_path):
    model = {"resnet_model": TorchModelDataset(str(tmp_path / "06_models" / "resnet34.pt"))}
    for stages in (("evaluate",), ("predict",)):
        with pytest.raises(ParameterError, match=r"No trained model at .*resnet34.pt. Train one first"):
            _check(params, *stages, **model)
    _check(params, "training", "evaluate", **model)  # the run trains it
    params["evaluate"]["model_run_id"] = "0123abcd"  # evaluate reads an MLflow run's model instead
    _check(params, "evaluate", **model)
    with pytest.raises(ParameterError, match="No trained model"):
        _check(params, "predict", **model)


def test_the_checks_run_before_kedro_mlflow_starts_its_run(params):
    """``tryfirst``: ahead of the plugins' ``before_pipeline_run`` (kedro-mlflow starts its run there),
    which pluggy would otherwise call first, as they are registered after the project's hooks."""
    called = []

    class LaterPlugin:
        @hook_impl
        def before_pipeline_run(self, run_params, pipeline, catalog):
            called.append(True)

    manager = _create_hook_manager()
    manager.register(ParameterChecks())
    manager.register(LaterPlugin())
    params["evaluate"]["tpyo"] = 1
    with pytest.raises(ParameterError):
        manager.hook.before_pipeline_run(run_params={}, pipeline=_pipeline("evaluate"), catalog=_catalog(params))
    assert not called


def test_the_cli_prints_a_user_error_alone_and_keeps_tracebacks_for_bugs(monkeypatch):
    from fer_pipeline import cli

    def stopped(**kwargs):
        raise ParameterError("evaluate.tta takes none, flip; got 'x'")

    monkeypatch.setattr(cli.kedro_run, "callback", stopped)
    result = CliRunner().invoke(cli.cli, ["run", "--env", "demo"])
    assert result.exit_code == 2
    assert result.output == "Error: evaluate.tta takes none, flip; got 'x'\n"

    def bug(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli.kedro_run, "callback", bug)
    result = CliRunner().invoke(cli.cli, ["run"])
    assert isinstance(result.exception, RuntimeError)


def _mlflow_runs(project: Path) -> int:
    database = project / "mlflow.db"
    if not database.exists():
        return 0
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("select name from sqlite_master where type='table'")}
        return connection.execute("select count(*) from runs").fetchone()[0] if "runs" in tables else 0


def _assert_stopped_short(project: Path, result, *expected: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert len(output.splitlines()) <= 25, output
    assert "Traceback" not in output and "WARNING" not in output  # nor a library's warning (third_party.py)
    flat = " ".join(output.split())
    for text in expected:
        assert text in flat, text
    data = project / "data"
    assert not data.exists() or not [path for path in data.rglob("*") if path.is_file()]
    assert _mlflow_runs(project) == 0


@pytest.mark.slow
def test_kedro_run_with_a_bad_evaluate_tta_stops_before_anything_runs(tmp_path):
    project = make_project(tmp_path / "project")
    result = run_kedro_in_process(project, "run", "--env", "demo", "--pipelines", "evaluate", "--params",
                                  "evaluate.tta=tenfold")
    _assert_stopped_short(project, result, "evaluate.tta", "none, flip, ten_crop, choose_on_val; got 'tenfold'",
                          "conf/base/parameters_evaluate.yml")


@pytest.mark.slow
def test_kedro_run_without_the_dataset_stops_before_anything_runs(tmp_path):
    """A new checkout's first `kedro run`, before FER2013 is in place: where it looked, and the two
    ways on (a path to the data, or the demo). A path given by --params is named the same way
    (test_a_missing_source_stops_the_run_unless_the_demo_draws_it)."""
    project = make_project(tmp_path / "project")
    result = run_kedro(project, "run", timeout=300)
    _assert_stopped_short(project, result, "No dataset at 'data/01_raw/fer2013' (ingestion.source_path)",
                          "--params ingestion.source_path=/path/to/fer2013", "kedro run --env demo")
