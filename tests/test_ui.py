"""fer-ui: the MLflow UI and kedro-viz start, serve the demo run, and reach nothing but 127.0.0.1.

Each server runs with tests/net_audit/ first on PYTHONPATH: its sitecustomize records every
host that any Python process of the server (workers included) looks up or connects to. The
servers start in an environment without DO_NOT_TRACK and without the variables that make
mlflow assume a test or CI run (and send nothing), as a user's shell is, so fer-ui must switch
telemetry off itself. The controls show that the recorder, in that environment, catches plain
`mlflow ui` looking up its telemetry host and plain `kedro viz run` looking up PyPI.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fer_pipeline.processes import free_port

from .net_recording import outside, recorded_env, recorded_server, records

BIN = Path(sys.executable).parent


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        return response.read()


def test_the_recorder_sees_a_lookup_of_the_internet(tmp_path):
    """The control: a process that looks a public host up is caught (so a clean log means something)."""
    log = tmp_path / "net.jsonl"
    # a numeric address of TEST-NET-1: recorded, and no DNS query leaves the machine
    code = "import socket\nsocket.getaddrinfo('192.0.2.1', 443)\n"
    subprocess.run([sys.executable, "-c", code], env=recorded_env(log), check=True, timeout=60)
    seen = records(log)
    assert seen[0]["event"] == "start"
    assert [r["host"] for r in outside(seen)] == ["192.0.2.1"]


@pytest.mark.e2e
def test_fer_ui_mlflow_serves_the_demo_run_offline(demo_project, tmp_path):
    log = tmp_path / "net.jsonl"
    command = [str(BIN / "fer-ui"), "mlflow", "--workers", "1"]
    with recorded_server(command, demo_project, log, "/health") as (base, server):
        assert b"<html" in _get(base + "/").lower()
        found = json.loads(_get(base + "/ajax-api/2.0/mlflow/experiments/search?max_results=50"))
        assert "fer_pipeline_demo" in {e["name"] for e in found["experiments"]}
        time.sleep(5)  # telemetry is sent from a background thread after start-up
    seen = records(log)
    starts = [r["pid"] for r in seen if r["event"] == "start"]
    assert starts.count(server.pid) == 2  # fer-ui, then mlflow ui in its place (exec)
    assert len(set(starts)) >= 2  # and the worker
    assert outside(seen) == []


@pytest.mark.e2e
def test_fer_ui_viz_serves_the_demo_pipelines_offline(demo_project, tmp_path):
    import kedro_viz

    log, output = tmp_path / "net.jsonl", tmp_path / "viz.out"
    command = [str(BIN / "fer-ui"), "viz", "--env", "demo"]
    with recorded_server(command, demo_project, log, "/api/main", output=output) as (base, server):
        # its address, not the ~80 lines of third-party warnings that came before it
        assert output.read_text().splitlines() == [
            f"kedro-viz {kedro_viz.__version__} (offline) on {base}/ for {demo_project} (env demo)"]
        page = _get(base + "/").decode()
        assert "<html" in page.lower() and "./assets/" in page  # kedro-viz's own page...
        assert "https://" not in page.split("</head>")[0]  # ...without its fonts.googleapis.com links
        graph = json.loads(_get(base + "/api/main"))
        assert {"ingestion", "training", "evaluate", "__default__"} <= {p["id"] for p in graph["pipelines"]}
        # the page asks this on every load; the answer no longer comes from PyPI (no "None" banner)
        version = json.loads(_get(base + "/api/version"))
        assert version == {"installed": kedro_viz.__version__, "is_outdated": False, "latest": kedro_viz.__version__}
    seen = records(log)
    assert server.pid in {r["pid"] for r in seen if r["event"] == "start"}
    assert outside(seen) == []


@pytest.mark.e2e
def test_control_plain_mlflow_ui_looks_up_its_telemetry_host(demo_project, tmp_path):
    """Why fer-ui mlflow exists. If mlflow stops phoning home, this fails: then say so in the
    README and keep fer-ui for the 127.0.0.1 binding."""
    log = tmp_path / "net.jsonl"
    command = [str(BIN / "mlflow"), "ui", "--backend-store-uri", f"sqlite:///{tmp_path / 'empty.db'}",
               "--host", "127.0.0.1", "--workers", "1"]
    with recorded_server(command, demo_project, log, "/health"):
        time.sleep(5)
    assert any("mlflow-telemetry" in str(r["host"]) for r in outside(records(log)))


@pytest.mark.e2e
def test_control_plain_kedro_viz_run_looks_up_pypi(demo_project, tmp_path):
    """Why fer-ui viz exists (see the mlflow control)."""
    log = tmp_path / "net.jsonl"
    command = [str(BIN / "kedro"), "viz", "run", "--host", "127.0.0.1", "--no-browser", "--env", "demo"]
    with recorded_server(command, demo_project, log, "/api/main") as (base, _):
        assert json.loads(_get(base + "/api/version"))["latest"] == "None"  # the banner's cause
    assert any("pypi" in str(r["host"]) for r in outside(records(log)))


def test_the_guard_refuses_every_host_but_the_loopback():
    """In a child process: an audit hook cannot be removed from this one."""
    code = """
import socket, urllib.request
from fer_pipeline.commands.ui import install_loopback_guard
install_loopback_guard()
socket.getaddrinfo("127.0.0.1", 80)
socket.getaddrinfo("localhost", 80)
for call in (lambda: socket.getaddrinfo("pypi.org", 443), lambda: socket.gethostbyname("example.com"),
             lambda: socket.gethostbyaddr("93.184.216.34"), lambda: socket.getaddrinfo("x.localhost", 80)):
    try:
        call()
    except socket.gaierror as error:
        print("refused:", error)
with socket.socket() as sock:
    try:
        sock.connect(("93.184.216.34", 80))
    except ConnectionRefusedError as error:
        print("refused:", error)
try:
    urllib.request.urlopen("https://pypi.org/pypi/kedro-viz/json", timeout=5)
except OSError as error:
    print("refused:", error)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 6 and all(line.startswith("refused:") for line in lines)
    assert "'pypi.org'" in lines[0] and "'example.com'" in lines[1] and "'93.184.216.34'" in lines[2]
    assert "'x.localhost'" in lines[3] and "'93.184.216.34'" in lines[4]  # *.localhost may go to DNS


def test_loopback_hosts():
    from fer_pipeline.commands.ui import is_loopback

    for host in (None, "localhost", "127.0.0.1", "127.8.9.10", "::1", "[::1]", "::ffff:127.0.0.1", b"127.0.0.1"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "10.0.0.1", "x.localhost", "pypi.org", "::ffff:10.0.0.1", "::"):
        assert not is_loopback(host), host


def test_pages_lose_only_the_tags_that_load_from_other_hosts():
    from fer_pipeline.commands.ui import without_external_resources

    page = """<head><link rel="preconnect" href="https://fonts.gstatic.com" crossorigin />
<link
  href="https://fonts.googleapis.com/css2?family=Inter&display=swap"
  rel="stylesheet"
/>
<script src='http://cdn.example.com/heap.js'></script>
<script type="module" src="./assets/index.js"></script>
<link rel="stylesheet" href="http://127.0.0.1:4141/assets/x.css">
<link rel="stylesheet" href="http://localhost:4141/y.css"></head>"""
    kept = without_external_resources(page)
    assert "gstatic" not in kept and "googleapis" not in kept and "example.com" not in kept
    for local in ('src="./assets/index.js"', 'href="http://127.0.0.1:4141/assets/x.css"', 'href="http://localhost:4141/y.css"'):
        assert local in kept


def test_kedro_viz_version_check_answers_the_installed_version():
    code = """
from fer_pipeline.commands.ui import answer_viz_version_check_locally
installed = answer_viz_version_check_locally()
from kedro_viz.api.rest.responses.version import get_version_response
print(installed, get_version_response().model_dump())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    installed, response = done.stdout.strip().split(" ", 1)
    assert response == str({"installed": installed, "is_outdated": False, "latest": installed})


def test_the_mlflow_ui_runs_this_projects_app_which_mlflow_finds_by_name():
    from mlflow.server import _find_app

    from fer_pipeline.commands.ui import mlflow_command

    command = mlflow_command(5000, "sqlite:///mlflow.db", 1)
    assert command[command.index("--app-name") + 1] == "fer_pipeline"
    assert _find_app("fer_pipeline") == "fer_pipeline.commands.mlflow_app:app"  # the entry point


def test_the_mlflow_ui_opens_on_the_latest_runs_experiment_or_the_one_named(tmp_path):
    from mlflow.tracking import MlflowClient

    from fer_pipeline.commands.ui import UsageError, landing_experiment

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    assert landing_experiment(uri, None) is None  # an empty store: the UI's own home page
    first, second = client.create_experiment("fer_pipeline"), client.create_experiment("fer_ablation_cpu")
    client.create_run(second)
    time.sleep(0.01)
    client.create_run(first)
    assert landing_experiment(uri, None) == first
    assert landing_experiment(uri, "fer_ablation_cpu") == second
    with pytest.raises(UsageError, match="no experiment 'nope' .*fer_ablation_cpu, fer_pipeline"):
        landing_experiment(uri, "nope")


def test_usage_errors_exit_2_before_any_server_starts(tmp_path, capsys, monkeypatch):
    from fer_pipeline.commands.ui import main

    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[tool.kedro]\npackage_name = "fer_pipeline"\n')
    monkeypatch.chdir(project)
    assert main(["mlflow", "--port", "5999"]) == 2
    assert f"no MLflow store at {project.resolve() / 'mlflow.db'}" in capsys.readouterr().err

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["viz", "--port", str(port)]) == 2
        assert f"port {port} on 127.0.0.1 is in use" in capsys.readouterr().err
    assert main(["mlflow", "--port", "0"]) == 2
    with pytest.raises(SystemExit):
        main(["notebook"])


def test_a_store_that_cannot_be_listed_leaves_the_ui_on_its_home_page(tmp_path, capsys, monkeypatch):
    from fer_pipeline.commands import ui
    from fer_pipeline.processes import free_port

    def unreadable(uri, name):
        raise OSError("disk I/O error")

    started = {}
    monkeypatch.setattr(ui, "landing_experiment", unreadable)
    monkeypatch.setattr(ui.os, "execve", lambda path, argv, env: started.update(env=env))
    ui.serve_mlflow(tmp_path, free_port(), "sqlite:///broken.db", 1)
    assert started["env"][ui.LANDING_ENVIRONMENT] == ""
    assert "could not list the runs of sqlite:///broken.db (OSError)" in capsys.readouterr().err


def test_fer_ui_docs_serves_the_site_strictly_on_the_loopback(tmp_path):
    from fer_pipeline.commands.ui import build_parser, docs_command

    command = docs_command(tmp_path, 8123)
    assert command[1:4] == ["-m", "mkdocs", "serve"] and "--strict" in command
    assert command[command.index("--dev-addr") + 1] == "127.0.0.1:8123"
    assert command[command.index("--config-file") + 1] == str(tmp_path / "mkdocs.yml")
    assert build_parser().parse_args(["docs"]).port == 8000


def test_fer_ui_docs_outside_a_checkout_says_what_is_missing(tmp_path, monkeypatch, capsys):
    from fer_pipeline.commands import ui

    monkeypatch.setattr(ui, "project_root", lambda: tmp_path)
    assert ui.main(["docs", "--port", str(free_port())]) == 2
    assert f"no mkdocs.yml in {tmp_path}" in capsys.readouterr().err
