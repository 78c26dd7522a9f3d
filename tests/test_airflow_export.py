"""The Airflow export: `kedro airflow create` (kedro-airflow) writes one DAG file per pipeline.

The DAG is checked against Kedro itself: every node of the pipeline runs in exactly one Airflow
task, every hand-off between tasks is a `>>` dependency and goes through a dataset that is saved
(an in-memory one, ``raw_source`` or ``photo_inputs``, would be empty in the next task's own
Kedro session: ``--group-by memory`` keeps its producer and consumers in one task), and one
task of a DAG run logs the served model (kedro-mlflow's ``PipelineML``).

Airflow is no dependency of the project. Where it is installed (in this environment, or in a
separate one named by ``FER_AIRFLOW_PYTHON``, which needs ``kedro``), Airflow's ``DagBag`` loads
the files; where that environment also has this project installed, the e2e test runs the demo
DAG with ``airflow dags test``. Elsewhere those tests are skipped, with the reason.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kedro.framework.project import configure_project, pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import MemoryDataset
from kedro_mlflow.pipeline.pipeline_ml import PipelineML

from .conftest import SMALL_DEMO_PARAMS, make_project, project_as_cwd, run_kedro, run_kedro_in_process

pytestmark = pytest.mark.slow  # `kedro airflow create`, and Airflow's own runs

#: What docs/scaling-out.md tells the user to run, for two pipelines in one call.
EXPORTED = {"__default__": "fer_pipeline_dag.py", "training": "fer_pipeline_training_dag.py"}
CREATE = ("airflow", "create", "--pipelines", ",".join(EXPORTED), "--group-by", "memory")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project copy as the working directory (``project_as_cwd``)."""
    with project_as_cwd(tmp_path_factory.mktemp("airflow") / "project") as copy:
        yield copy


@pytest.fixture(scope="module")
def dag_folder(project) -> Path:
    result = run_kedro_in_process(project, *CREATE)
    assert result.returncode == 0, f"kedro airflow create failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    folder = project / "airflow_dags"  # the plugin's default --target-dir, inside the project
    assert sorted(p.name for p in folder.iterdir()) == sorted(EXPORTED.values())
    return folder


@pytest.fixture(scope="module")
def kedro_project(project):
    """The project's pipelines and catalog (env ``local``, as exported), from Kedro itself."""
    bootstrap_project(project)
    configure_project("fer_pipeline")
    pipelines.set_requested(None)
    registered = {name: pipelines[name] for name in EXPORTED}
    with KedroSession.create(project_path=project) as session:
        catalog = session.load_context().catalog
    return registered, catalog


def _read_dag(path: Path) -> dict:
    """What the generated module says, read with ``ast`` (Airflow need not be installed)."""
    source = path.read_text()
    tree = ast.parse(compile(source, str(path), "exec", flags=ast.PyCF_ONLY_AST))
    settings, dag_id, tasks, edges = {}, None, {}, set()
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
            settings[stmt.targets[0].id] = stmt.value
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef):
            continue
        for deco in fn.decorator_list:
            if not isinstance(deco, ast.Call):
                continue
            keywords = {k.arg: ast.literal_eval(k.value) for k in deco.keywords if k.arg in ("dag_id", "task_id")}
            decorator = getattr(deco.func, "id", None)
            if decorator == "dag":
                dag_id = keywords["dag_id"]
            elif decorator == "task":
                calls = [c for c in ast.walk(fn) if isinstance(c, ast.Call)
                         and getattr(c.func, "id", None) == "_run_kedro_node"]
                assert len(calls) == 1, ast.dump(fn)
                (kw,) = calls[0].keywords
                assert kw.arg == "node_names", f"{keywords['task_id']} runs {kw.arg}, not nodes"
                tasks[keywords["task_id"]] = ast.literal_eval(kw.value)
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.RShift):
            edges.add((ast.literal_eval(node.left.slice), ast.literal_eval(node.right.slice)))
    return {
        "env": ast.literal_eval(settings["env"]),
        "pipeline_name": ast.literal_eval(settings["pipeline_name"]),
        "package_name": ast.literal_eval(settings["package_name"]),
        "dag_id": dag_id,
        "tasks": tasks,
        "edges": edges,
    }


@pytest.mark.parametrize("name", list(EXPORTED))
def test_the_dag_runs_every_node_once_in_the_pipelines_order(name, dag_folder, kedro_project):
    registered, catalog = kedro_project
    pipeline = registered[name]
    dag = _read_dag(dag_folder / EXPORTED[name])  # compiles
    assert (dag["env"], dag["pipeline_name"], dag["package_name"]) == ("local", name, "fer_pipeline")
    assert dag["dag_id"] == "fer-pipeline"  # kedro-airflow names every DAG after the package

    task_of = {node: task for task, nodes in dag["tasks"].items() for node in nodes}
    listed = [node for nodes in dag["tasks"].values() for node in nodes]
    assert sorted(listed) == sorted(n.name for n in pipeline.nodes), "each node in exactly one task"
    for task, nodes in dag["tasks"].items():  # task ids: the node names, slugified
        if len(nodes) == 1:
            assert task == nodes[0].replace("_", "-").replace(".", "-")

    producer = {out: n.name for n in pipeline.nodes for out in n.outputs}
    expected = set()
    for consumer in pipeline.nodes:
        for dataset in consumer.inputs:
            if dataset not in producer or task_of[producer[dataset]] == task_of[consumer.name]:
                continue
            # A hand-off between two tasks (two Kedro sessions) must be saved to be read.
            assert not isinstance(catalog.get(dataset), MemoryDataset), f"{dataset} crosses tasks in memory"
            expected.add((task_of[producer[dataset]], task_of[consumer.name]))
    assert dag["edges"] == expected

    # Each task is `session.run(node_names=...)`: exactly one of them trains, and logs the model.
    logging = [t for t, nodes in dag["tasks"].items() if isinstance(pipeline.filter(node_names=nodes), PipelineML)]
    assert logging == ["training-train-resnet"]


def test_in_memory_hand_offs_stay_inside_one_task(dag_folder):
    tasks = _read_dag(dag_folder / EXPORTED["__default__"])["tasks"]
    task_of = {node: task for task, nodes in tasks.items() for node in nodes}
    # raw_source and photo_inputs are handed over in memory: producer and consumer share a task
    assert sorted(tasks[task_of["ingestion.prepare_source"]]) == ["ingestion.ingest_faces", "ingestion.prepare_source"]
    assert sorted(tasks[task_of["predict.prepare_photos"]]) == ["predict.predict_emotions", "predict.prepare_photos"]


def _airflow_python() -> str:
    """An interpreter with Airflow 3: this one, or ``FER_AIRFLOW_PYTHON`` (a separate Airflow
    environment with ``kedro`` installed, e.g. ``pip install apache-airflow==3.3.2 kedro``)."""
    if importlib.util.find_spec("airflow") is not None:
        return sys.executable
    other = os.environ.get("FER_AIRFLOW_PYTHON")
    if other:
        return other
    pytest.skip("apache-airflow is not installed here (nor FER_AIRFLOW_PYTHON set to a Python that has it)")


LOAD_DAGS = """
import json, sys
import airflow
from airflow.models import DagBag

bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({
    "airflow": airflow.__version__,
    "errors": {path: str(err) for path, err in bag.import_errors.items()},
    "dags": {dag_id: {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks} for dag_id, dag in bag.dags.items()},
}))
"""


@pytest.mark.parametrize("name", list(EXPORTED))
def test_airflow_loads_the_dag(name, dag_folder, tmp_path):
    """Airflow's own ``DagBag`` imports the file: one DAG, the tasks and dependencies written.
    One file a folder: every DAG kedro-airflow writes for this project has the id ``fer-pipeline``."""
    python = _airflow_python()
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / EXPORTED[name]).write_text((dag_folder / EXPORTED[name]).read_text())
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow_home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "DO_NOT_TRACK": "true"}
    result = subprocess.run([python, "-c", LOAD_DAGS, str(folder)], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["errors"] == {}, loaded["errors"]
    dag = _read_dag(folder / EXPORTED[name])
    upstream = {task: sorted(a for a, b in dag["edges"] if b == task) for task in dag["tasks"]}
    assert loaded["dags"] == {"fer-pipeline": upstream}, f"Airflow {loaded['airflow']}"


def _airflow(python: str, home: Path, dags: Path, *args: str, cwd: Path, timeout: int = 300):
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
    result = subprocess.run([python, "-m", "airflow", *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"airflow {' '.join(args)}:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
    return result.stdout


def _json_table(stdout: str) -> list:
    """The JSON that `airflow ... -o json` prints after its log lines (they go to stdout too)."""
    return json.loads(next(line for line in reversed(stdout.splitlines()) if line.startswith("[")))


def _small_demo(project: Path) -> None:
    """The copy's demo environment at the e2e tests' size (a DAG's tasks take no --params)."""
    path = project / "conf" / "demo" / "parameters.yml"
    params = yaml.safe_load(path.read_text())
    for item in SMALL_DEMO_PARAMS.split(","):
        key, value = item.split("=")
        *groups, leaf = key.split(".")
        tree = params
        for group in groups:
            tree = tree[group]
        assert leaf in tree, key
        tree[leaf] = yaml.safe_load(value)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.e2e
def test_airflow_runs_the_demo_dag_and_logs_the_served_model(tmp_path):
    """`airflow dags test` runs the exported demo DAG, task by task, in a project folder: the
    deployment docs/scaling-out.md describes (Airflow started where conf/ is, the project installed)."""
    python = _airflow_python()
    if subprocess.run([python, "-c", "import fer_pipeline"], capture_output=True).returncode != 0:
        pytest.skip(f"{python} has Airflow but not this project (pip install the project's wheel there)")
    project = make_project(tmp_path / "project")
    _small_demo(project)
    result = run_kedro(project, "airflow", "create", "--env", "demo", "--group-by", "memory", timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    dags = project / "airflow_dags"
    assert [p.name for p in dags.iterdir()] == ["fer_pipeline_demo_dag.py"]
    home = tmp_path / "airflow_home"

    _airflow(python, home, dags, "db", "migrate", cwd=project)
    _airflow(python, home, dags, "dags", "test", "fer-pipeline", cwd=project, timeout=1200)
    runs = _json_table(_airflow(python, home, dags, "dags", "list-runs", "fer-pipeline", "-o", "json", cwd=project))
    assert [run["state"] for run in runs] == ["success"]
    states = _json_table(_airflow(python, home, dags, "tasks", "states-for-dag-run", "fer-pipeline",
                                 runs[0]["run_id"], "-o", "json", cwd=project))
    tasks = _read_dag(dags / "fer_pipeline_demo_dag.py")["tasks"]
    assert {s["task_id"]: s["state"] for s in states} == dict.fromkeys(tasks, "success")

    assert (project / "data" / "demo" / "08_reporting" / "evaluation_metrics.json").is_file()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fer_pipeline_demo")  # conf/demo/mlflow.yml
    models = client.search_logged_models(experiment_ids=[experiment.experiment_id])
    assert [m.name for m in models] == ["emotion_model"]
