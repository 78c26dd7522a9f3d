"""fer-serve: which model it finds, the command and environment it runs, and its usage errors.

Serving itself (the real server on the demo's model) is tests/test_serving.py.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest

from fer_pipeline.commands.serve import (
    LOGGING_CONFIG,
    experiment_name,
    main,
    newest_model_uri,
    serve_command,
    serve_environment,
)
from fer_pipeline.commands.ui import UsageError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "project"
    (root / "conf" / "base").mkdir(parents=True)
    (root / "conf" / "demo").mkdir()
    (root / "pyproject.toml").write_text('[tool.kedro]\npackage_name = "fer_pipeline"\n')
    for env in ("base", "demo"):
        (root / "conf" / env / "mlflow.yml").write_text((REPO / "conf" / env / "mlflow.yml").read_text())
    monkeypatch.chdir(root)
    return root


def test_each_environment_serves_from_its_own_experiment(project):
    assert experiment_name(REPO, None) == "fer_pipeline"
    assert experiment_name(REPO, "demo") == "fer_pipeline_demo"
    assert experiment_name(REPO, "cpu") == "fer_pipeline"  # conf/cpu logs with the real runs
    with pytest.raises(UsageError, match=r"no environment 'dmeo' in .* \(there are: base, demo\)"):
        experiment_name(project, "dmeo")


def test_the_newest_emotion_model_of_the_experiment_is_served(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    with pytest.raises(UsageError, match="no run of experiment 'fer_pipeline' .* has logged emotion_model yet"):
        newest_model_uri(uri, "fer_pipeline")
    experiment = client.create_experiment("fer_pipeline")
    runs = [client.create_run(experiment).info.run_id for _ in range(3)]
    client.create_logged_model(experiment, name="emotion_model", source_run_id=runs[0])
    time.sleep(0.01)
    client.create_logged_model(experiment, name="emotion_model", source_run_id=runs[1])
    time.sleep(0.01)
    client.create_logged_model(experiment, name="another_model", source_run_id=runs[2])
    assert newest_model_uri(uri, "fer_pipeline") == f"runs:/{runs[1]}/emotion_model"


def test_the_server_runs_offline_on_the_loopback_with_quiet_kedro_logs(monkeypatch):
    command = serve_command("runs:/abc/emotion_model", 5123, 2)
    assert command[:5] == [sys.executable, "-m", "mlflow", "models", "serve"]
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--env-manager") + 1] == "local"
    assert command[5:7] == ["-m", "runs:/abc/emotion_model"]
    monkeypatch.delenv("KEDRO_LOGGING_CONFIG", raising=False)
    env = serve_environment("sqlite:////x/mlflow.db")
    assert env["DO_NOT_TRACK"] == env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["MLFLOW_TRACKING_URI"] == "sqlite:////x/mlflow.db"
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)  # MLflow starts `uvicorn` by name
    assert Path(env["KEDRO_LOGGING_CONFIG"]) == LOGGING_CONFIG and LOGGING_CONFIG.is_file()
    monkeypatch.setenv("KEDRO_LOGGING_CONFIG", "/mine.yml")
    assert serve_environment("sqlite:///m.db")["KEDRO_LOGGING_CONFIG"] == "/mine.yml"  # the user's wins


def test_kedro_takes_the_logging_config_and_logs_only_warnings():
    import subprocess

    code = ("import logging, kedro.framework.project\n"
            "print(logging.getLogger('kedro.runner.sequential_runner').getEffectiveLevel())")
    env = {**os.environ, "KEDRO_LOGGING_CONFIG": str(LOGGING_CONFIG)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "30"  # WARNING; Kedro's own default is INFO (20)


def test_usage_errors_exit_2_before_any_server_starts(project, capsys, monkeypatch):
    from fer_pipeline.commands.ui import OFFLINE_ENVIRONMENT

    for key in OFFLINE_ENVIRONMENT:  # main() switches telemetry off in os.environ: undone after the test
        monkeypatch.setenv(key, "true")
    assert main([]) == 2
    assert f"no MLflow store at {project.resolve() / 'mlflow.db'} yet" in capsys.readouterr().err
    (project / "mlflow.db").write_bytes(b"")
    assert main(["--env", "dmeo"]) == 2
    assert "no environment 'dmeo'" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port), "--run-id", "abc"]) == 2
        assert f"port {port} on 127.0.0.1 is in use" in capsys.readouterr().err
    assert main(["--port", "0"]) == 2 and main(["--workers", "0"]) == 2
    (project / "mlflow.db").unlink()
    with socket.socket() as taken:  # a model folder needs no store: the next check is the port's
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--model-uri", str(project), "--port", str(port)]) == 2
        assert "is in use" in capsys.readouterr().err
    assert main(["--run-id", "abc"]) == 2 and "no MLflow store" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--run-id", "a", "--model-uri", "b"])  # one or the other
