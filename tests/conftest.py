"""Shared fixtures: a throw-away copy of the Kedro project and one small demo run in it."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KEDRO = Path(sys.executable).with_name("kedro")

# Small enough for CI's 2 cores, big enough that every stage has every class in every split.
SMALL_DEMO_PARAMS = ",".join(
    [
        "ingestion.demo.n_train=420",
        "ingestion.demo.n_test=140",
        "autoencoder.epochs=1",
        "training.config.epochs=2",
        "training.config.drw_epoch=1",
        "predict.demo_photos.n_photos=2",
    ]
)


def make_project(root: Path) -> Path:
    """A Kedro project at ``root`` sharing this repo's code and config, with empty data/."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir(exist_ok=True)
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    shutil.copy(REPO / ".telemetry", root / ".telemetry")
    # The package itself is installed (editable); kedro only needs src/ to exist.
    (root / "src").mkdir()
    if (REPO / "notebooks").exists():
        shutil.copytree(REPO / "notebooks", root / "notebooks")
    return root


@contextlib.contextmanager
def project_as_cwd(root: Path) -> Iterator[Path]:
    """``make_project(root)`` as the working directory while inside: loading a Kedro context runs
    kedro-mlflow's hooks, which create the ``mlflow.db`` of the project around the working
    directory (``${project_root:}``), and that must never be the checkout's own."""
    copy = make_project(root)
    cwd = os.getcwd()
    os.chdir(copy)
    try:
        yield copy
    finally:
        os.chdir(cwd)


#: The environment of a test's `kedro` run, in its own process or this one: no telemetry, and wide
#: enough lines that rich does not wrap the messages the tests look for.
KEDRO_RUN_ENV = {"DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "COLUMNS": "200"}


def run_kedro(project: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, **KEDRO_RUN_ENV, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [str(KEDRO), *args], cwd=project, env=env, capture_output=True, text=True, timeout=timeout
    )


def run_kedro_in_process(project: Path, *args: str) -> subprocess.CompletedProcess:
    """``kedro <args>`` as ``run_kedro`` runs it, the same commands (Kedro's ``KedroCLI``, which the
    ``kedro`` executable runs: Kedro's, the plugins', and ``fer_pipeline.cli``'s ``run``), but in
    this process, through click's ``CliRunner``: 1-3 s a run where a new process spends 5-10 s
    importing torch, MLflow and Kedro and loading the plugins. The result reads like
    ``run_kedro``'s: the exit status, stdout, and stderr with the log records and the traceback of
    an error that is not the user's. Tests of the ``kedro`` executable itself, or of processes a
    run starts (training workers), use ``run_kedro``."""
    import io
    import logging
    import traceback

    from click.testing import CliRunner

    logs = io.StringIO()
    handler = logging.StreamHandler(logs)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    with _process_state_restored(project), _kedro_process_warning_filters():
        from kedro.framework.cli.cli import KedroCLI

        kedro = KedroCLI(project)  # the `kedro` executable's commands, the project bootstrapped
        logging.getLogger().addHandler(handler)
        result = CliRunner().invoke(kedro, list(args))
    stderr = result.stderr + logs.getvalue()
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return subprocess.CompletedProcess(["kedro", *args], result.exit_code, result.stdout, stderr)


@contextlib.contextmanager
def _process_state_restored(project: Path) -> Iterator[None]:
    """Inside: ``project`` as the working directory, ``run_kedro``'s environment. After: the MLflow
    runs left active ended as a process's exit ends them (kedro-mlflow leaves its run on MLflow's
    stack twice and pops it once), then what a ``kedro run`` changes in its process put back
    (``_ProcessState``), even when ending the runs fails."""
    import mlflow

    saved = _ProcessState.now()
    os.environ.update(KEDRO_RUN_ENV)
    os.chdir(project)
    try:
        yield
    finally:
        try:
            while mlflow.active_run():
                mlflow.end_run()
        finally:
            saved.restore()


@dataclasses.dataclass
class _ProcessState:
    """What a ``kedro run`` changes in its process: the working directory, the environment,
    ``sys.path``, ``sys.excepthook`` and ``sys.displayhook`` (Kedro's rich logging installs rich's),
    MLflow's tracking and registry URIs and active experiment, the root logger's handlers and
    level, the random generators (training seeds them) and torch's threads. What the first run in a
    process sets up once stays, as a ``kedro`` process has it: the modules it imports, and the
    ``kedro`` and ``fer_pipeline`` loggers at INFO (Kedro sets them once a process; put back, the
    next run's INFO records would be lost)."""

    cwd: str
    env: dict
    path: list
    hooks: tuple
    experiment_id: str | None
    handlers: list
    level: int
    rng: tuple
    threads: int

    @classmethod
    def now(cls) -> _ProcessState:
        import logging
        import random

        import mlflow.tracking.fluent
        import numpy as np
        import torch

        return cls(os.getcwd(), dict(os.environ), list(sys.path), (sys.excepthook, sys.displayhook),
                   mlflow.tracking.fluent._active_experiment_id,  # set_experiment's; no public way to unset it
                   list(logging.getLogger().handlers),
                   logging.getLogger().level,
                   (random.getstate(), np.random.get_state(), torch.random.get_rng_state()), torch.get_num_threads())

    def restore(self) -> None:
        import logging
        import random

        import mlflow.tracking.fluent
        import numpy as np
        import torch

        os.chdir(self.cwd)
        for key in set(os.environ) - set(self.env):  # key by key: other threads may read the environment
            del os.environ[key]
        os.environ.update({key: value for key, value in self.env.items() if os.environ.get(key) != value})
        mlflow.set_tracking_uri(self.env.get("MLFLOW_TRACKING_URI"))  # set_tracking_uri keeps the two equal
        mlflow.set_registry_uri(self.env.get("MLFLOW_REGISTRY_URI"))
        mlflow.tracking.fluent._active_experiment_id = self.experiment_id
        sys.path[:] = self.path
        sys.excepthook, sys.displayhook = self.hooks
        logging.getLogger().handlers[:] = self.handlers
        logging.getLogger().setLevel(self.level)
        random.setstate(self.rng[0])
        np.random.set_state(self.rng[1])
        torch.random.set_rng_state(self.rng[2])
        torch.set_num_threads(self.threads)


@contextlib.contextmanager
def _kedro_process_warning_filters() -> Iterator[None]:
    """A `kedro` process's warnings: Python's default filters (pytest's show every deprecation),
    then the ``kedro.init`` entry points (ours, pyproject.toml, silences ``third_party``'s known
    warnings), and each warning shown as a log record (``py.warnings``), as Kedro's rich logging has
    them, where pytest would record it instead. A warning given only on import is not seen again by
    a run in a process that has imported the module already."""
    import warnings

    from kedro.framework.cli.utils import load_entry_points

    with warnings.catch_warnings():
        warnings.resetwarnings()
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
        warnings.showwarning = _warning_as_log_record  # catch_warnings puts pytest's back after
        for init in load_entry_points("init"):  # what the `kedro` executable runs first
            init()
        yield


def _warning_as_log_record(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """``warnings.showwarning`` as ``logging.captureWarnings(True)`` makes it (a ``py.warnings`` record)."""
    import logging
    import warnings

    logging.getLogger("py.warnings").warning("%s", warnings.formatwarning(message, category, filename, lineno, line))


def _build_demo(root: Path) -> Path:
    project = make_project(root)
    result = run_kedro(project, "run", "--env", "demo", "--params", SMALL_DEMO_PARAMS)
    if result.returncode != 0:
        pytest.fail(f"kedro run --env demo failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return project


def move_mlflow_store(database: Path, old: Path, new: Path) -> None:
    """Point an sqlite MLflow store's paths (artifact locations, run artifact URIs, logged models)
    from project ``old`` to its copy ``new``: every text value that names ``old``."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(database)) as db, db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for column in db.execute(f'PRAGMA table_info("{table}")').fetchall():
                if any(kind in column[2].upper() for kind in ("CHAR", "TEXT")):
                    db.execute(f'UPDATE "{table}" SET "{column[1]}" = replace("{column[1]}", ?, ?) '
                               f'WHERE instr("{column[1]}", ?) > 0', (str(old), str(new), str(old)))


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory, worker_id) -> Path:
    """`kedro run --env demo` (every pipeline) once, on small generated data. Under pytest-xdist
    the first worker that needs it builds it (a lock keeps the others waiting), and each worker
    works in its own copy, its MLflow store moved with it: tests add runs and files to it."""
    if worker_id == "master":
        return _build_demo(tmp_path_factory.mktemp("demo") / "fer_project")
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent / "demo_build"
    built = shared / "fer_project"
    with FileLock(f"{shared}.lock"):
        if not (shared / "built").exists():
            _build_demo(built)
            (shared / "built").touch()
    copy = tmp_path_factory.mktemp("demo") / "fer_project"
    shutil.copytree(built, copy, symlinks=True)
    move_mlflow_store(copy / "mlflow.db", built, copy)
    return copy


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny convolutions run far faster on one thread, above all on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def fer_demo_folder(tmp_path_factory) -> Path:
    """A small drawn-face dataset in FER2013's folder layout (210 train, 70 test faces)."""
    from fer_pipeline.demo import generate_demo_dataset

    root = tmp_path_factory.mktemp("fer_demo") / "fer2013"
    generate_demo_dataset(root, n_train=210, n_test=70, progress=False)
    return root


@pytest.fixture
def runner_log_handlers_removed():
    """In-process calls of the runner add log handlers to the root logger: remove them after."""
    import logging

    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_fer_runner", False)]:
        root.removeHandler(handler)
        handler.close()


#: The files that take longest (seconds of one worker on 2 cores: from 66 s down to about 5 s), run
#: first, longest first: scripts/test.sh hands the files to the pytest-xdist workers one at a time
#: as each gets free, in collection order (``--no-loadscope-reorder``), and a long file handed out
#: last keeps one worker busy while the other has finished (its default, most tests first, left the
#: one-test files for last; test_predict_cli.py, in collection order, ended one worker 18 s after
#: the other). After these come files of a few seconds at most. The demo build's file leads, so
#: that the shared demo run is ready when the other worker's demo tests start.
HEAVY_FILES_FIRST = (
    "tests/test_e2e_demo.py", "tests/core/training/test_job.py", "tests/test_ui.py", "tests/test_train_cli.py",
    "tests/test_browser_ui.py", "tests/test_tracking_server.py", "tests/test_gpu_session.py", "tests/test_serving.py",
    "tests/test_ablation_cpu_script.py", "tests/test_predict_cli.py", "tests/test_ferplus_e2e.py",
    "tests/ablation/test_run.py", "tests/runner/test_run.py", "tests/test_docs_site.py",
    "tests/core/training/test_train.py", "tests/test_notebook.py", "tests/kedro_glue/test_parameter_checks.py",
    "tests/core/faces/test_recognizer.py", "tests/core/serving/test_requests.py", "tests/test_airflow_export.py",
    "tests/ablation/test_report.py", "tests/runner/test_resume_check.py", "tests/core/training/test_distributed.py",
    "tests/core/test_models.py", "tests/runner/test_same_evaluation.py",
)


def pytest_collection_modifyitems(config, items):
    """``slow``: what the quick loop (``pytest -m "not slow"``) leaves out: every test marked
    ``e2e`` or ``browser``, every test of the shared demo run, and the ones marked ``slow``.
    Then ``HEAVY_FILES_FIRST`` lead, in that order; the other files keep theirs."""
    for item in items:
        marks = {mark.name for mark in item.iter_markers()}
        if marks & {"e2e", "browser"} or "demo_project" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
    rank = {name: index for index, name in enumerate(HEAVY_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: a file stays whole
