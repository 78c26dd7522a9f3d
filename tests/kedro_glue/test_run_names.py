from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace

from fer_pipeline.kedro_glue.run_names import RunNames, run_name

STARTED = datetime(2026, 12, 4, 21, 55, 30)


def test_a_full_run_reads_all_stages_with_its_environment_and_minute():
    assert run_name({"pipeline_names": ["__default__"], "env": "demo"}, STARTED) == "all stages · demo · 2026-12-04 21:55"
    assert run_name({}, STARTED) == "all stages · local · 2026-12-04 21:55"  # Kedro's default environment


def test_named_pipelines_are_listed_and_a_narrowed_run_says_so():
    assert run_name({"pipeline_names": ["evaluate"], "env": "cpu"}, STARTED).startswith("evaluate · cpu · ")
    assert run_name({"pipeline_name": "training"}, STARTED).startswith("training · local")  # Kedro < 1.0's key
    both = run_name({"pipeline_names": ["ingestion", "class_balance"], "node_names": []}, STARTED)
    assert both.startswith("ingestion+class_balance · ")
    part = run_name({"pipeline_names": ["evaluate"], "node_names": ["evaluate.evaluate_external"]}, STARTED)
    assert part.startswith("evaluate (part) · ")


def _kedro_mlflow_config(name=None):
    return SimpleNamespace(tracking=SimpleNamespace(run=SimpleNamespace(name=name)))


def test_the_hook_names_the_run_kedro_mlflow_starts_unless_mlflow_yml_named_it():
    config = _kedro_mlflow_config()
    hooks = RunNames()
    hooks.after_context_created(SimpleNamespace(mlflow=config))
    hooks.before_pipeline_run({"pipeline_names": ["__default__"], "env": "demo"})
    assert config.tracking.run.name.startswith("all stages · demo · ")

    named = _kedro_mlflow_config("nightly")
    hooks.after_context_created(SimpleNamespace(mlflow=named))
    hooks.before_pipeline_run({"pipeline_names": ["__default__"], "env": "demo"})
    assert named.tracking.run.name == "nightly"


def test_without_kedro_mlflow_the_hook_does_nothing():
    hooks = RunNames()
    hooks.after_context_created(SimpleNamespace())
    hooks.before_pipeline_run({"pipeline_names": ["__default__"]})  # no error


def test_the_demo_run_is_named_after_what_ran(demo_project):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{demo_project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fer_pipeline_demo")
    # the fixture's own `kedro run --env demo` is the first run (other tests add theirs after it)
    run = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])[0]
    assert run.info.run_name.startswith("all stages · demo · ")
