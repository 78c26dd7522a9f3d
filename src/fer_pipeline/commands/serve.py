"""``fer-serve``: serve the newest trained emotion model over HTTP, offline and on 127.0.0.1.

    fer-serve                    the newest ``emotion_model`` of the real runs (experiment fer_pipeline)
    fer-serve --env demo         the demo's (experiment fer_pipeline_demo)
    fer-serve --run-id <id>      the model a given run logged

It finds the model in the project's MLflow store and replaces itself (``exec``) with MLflow's
own server, as the plain command of docs/serving.md does:

    mlflow models serve -m runs:/<run id>/emotion_model --env-manager local --host 127.0.0.1

with telemetry switched off (the ``mlflow models serve`` command does not import this package:
only its worker does, when it loads the model, too late for the package's ``DO_NOT_TRACK``),
the tracking URI of the project's store, this environment's ``bin/`` on PATH (MLflow starts
``uvicorn`` by name), and Kedro's logging at warnings (``serving_logging.yml``). Its PID is the
server's; MLflow's uvicorn runs as its child. Requests: docs/serving.md.

Exit codes: 2 on a usage error (no store, no logged model, port in use); otherwise the server's.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from fer_pipeline.commands.ui import (
    HOST,
    OFFLINE_ENVIRONMENT,
    UsageError,
    check_port_free,
    offline_environment,
    project_store_uri,
)
from fer_pipeline.project import project_root

DEFAULT_PORT = 5001


def experiment_name(root: Path, env: str | None) -> str:
    """``tracking.experiment.name`` of ``conf/<env>/mlflow.yml`` over ``conf/base/mlflow.yml``:
    the experiment the runs of that environment log to."""
    from fer_pipeline.params import deep_merge, read_yaml_file

    if env is not None and not (root / "conf" / env).is_dir():
        known = sorted(p.name for p in (root / "conf").iterdir() if p.is_dir() and p.name != "local")
        raise UsageError(f"no environment {env!r} in {root / 'conf'} (there are: {', '.join(known)})")
    merged: dict = {}
    for folder in ("base", env) if env else ("base",):
        path = root / "conf" / folder / "mlflow.yml"
        if path.is_file():
            merged = deep_merge(merged, read_yaml_file(path))
    name = merged.get("tracking", {}).get("experiment", {}).get("name")
    if not name:
        raise UsageError(f"no tracking.experiment.name in {root / 'conf'}/<env>/mlflow.yml")
    return name


def newest_model_uri(tracking_uri: str, experiment: str) -> str:
    """``runs:/<run id>/emotion_model`` of the newest model logged in ``experiment``."""
    from mlflow.tracking import MlflowClient

    from fer_pipeline.kedro_glue.served_model import MODEL_NAME

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    models = [] if found is None else client.search_logged_models(
        experiment_ids=[found.experiment_id], filter_string=f"name = '{MODEL_NAME}'", max_results=1,
        order_by=[{"field_name": "creation_time", "ascending": False}])
    if not models:
        raise UsageError(f"no run of experiment {experiment!r} in {tracking_uri} has logged {MODEL_NAME} yet: "
                         "train one (`kedro run`; the demo: `bash scripts/demo.sh`, then `fer-serve --env demo`), "
                         "or pass --run-id / --model-uri")
    return f"runs:/{models[0].source_run_id}/{MODEL_NAME}"


def serve_command(model_uri: str, port: int, workers: int) -> list[str]:
    """The ``mlflow models serve`` command line ``fer-serve`` runs."""
    return [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
            "--host", HOST, "--port", str(port), "--workers", str(workers)]


#: Kedro's logging for the server: warnings only (the served pipeline runs once per request).
LOGGING_CONFIG = Path(__file__).with_name("serving_logging.yml")


def serve_environment(tracking_uri: str | None) -> dict[str, str]:
    """``offline_environment`` + the tracking URI (when there is one) + this Python's ``bin/``
    first on PATH + ``LOGGING_CONFIG`` as Kedro's logging (unless the user set
    ``KEDRO_LOGGING_CONFIG``)."""
    env = offline_environment()
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    env.setdefault("KEDRO_LOGGING_CONFIG", str(LOGGING_CONFIG))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fer-serve",
        description="Serve the emotion model a training run logged (mlflow models serve), offline on 127.0.0.1.")
    parser.add_argument("--env", default=None,
                        help="Kedro environment whose newest model to serve (e.g. demo; default: the real runs)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--run-id", default=None, help="serve the model this MLflow run logged")
    which.add_argument("--model-uri", default=None, help="any MLflow model URI (runs:/..., models:/..., a folder)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    parser.add_argument("--tracking-uri", default=None,
                        help="default: sqlite:///<project>/mlflow.db (what kedro run logs to)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.port < 65536:
        print(f"fer-serve: error: --port must be 1-65535, got {args.port}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print(f"fer-serve: error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    root = project_root()
    os.environ.update(OFFLINE_ENVIRONMENT)  # before mlflow is imported to look the model up
    try:
        # A model folder needs no store; a run's or registry's model, and the newest, do.
        from_store = args.model_uri is None or args.model_uri.startswith(("runs:", "models:"))
        tracking_uri = args.tracking_uri or (project_store_uri(root, "--tracking-uri") if from_store else None)
        check_port_free(args.port)
        if args.model_uri:
            model_uri = args.model_uri
        elif args.run_id:
            from fer_pipeline.kedro_glue.served_model import MODEL_NAME

            model_uri = f"runs:/{args.run_id}/{MODEL_NAME}"
        else:
            model_uri = newest_model_uri(tracking_uri, experiment_name(root, args.env))
    except UsageError as error:
        print(f"fer-serve: error: {error}", file=sys.stderr)
        return 2
    command = serve_command(model_uri, args.port, args.workers)
    print(f"Serving {model_uri} (offline) on http://{HOST}:{args.port}/invocations", flush=True)
    os.chdir(root)  # runs logged with relative artifact paths resolve from the project
    os.execve(command[0], command, serve_environment(tracking_uri))
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
