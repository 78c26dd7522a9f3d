"""kedro-viz and the MLflow UI after a demo run, loaded in headless Chromium.

Skipped with a reason when Chromium or its driver is missing (`.ci/run` installs Debian's
`chromium` and `chromium-driver`). Servers bind to 127.0.0.1 and are stopped, children
included, by PID. Screenshots go to the demo project's data/08_reporting/.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
BIN = Path(sys.executable).parent


def _free_port() -> int:
    """A free port below 49152: kedro-viz refuses the ephemeral range the OS would hand out."""
    for port in random.Random().sample(range(20000, 45000), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-45000")


def _descendants(pid: int) -> list[int]:
    """All processes below ``pid`` (read from /proc: no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat")
    return not (state.exists() and state.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def _stop(process: subprocess.Popen) -> list[int]:
    """SIGTERM the server and every descendant by PID, then SIGKILL stragglers; return the PIDs."""
    pids = _descendants(process.pid) + [process.pid]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(p) for p in pids):
        process.poll()
        time.sleep(0.2)
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=10)
    return pids


def _wait_http(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early ({process.returncode}): {process.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def _start(cmd: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1600,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait_for_text(driver, needles: list[str], timeout: float = 60) -> str:
    deadline = time.time() + timeout
    text = ""
    while time.time() < deadline:
        text = driver.find_element("tag name", "body").text
        if all(n in text for n in needles):
            return text
        time.sleep(1)
    missing = [n for n in needles if n not in text]
    raise AssertionError(f"page never showed {missing}; it showed:\n{text[:3000]}")


def test_kedro_viz_shows_every_pipeline(demo_project, browser):
    port = _free_port()
    server = _start([str(BIN / "kedro"), "viz", "run", "--host", "127.0.0.1", "--port", str(port),
                     "--no-browser", "--env", "demo"], demo_project)
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/main", server)
        browser.get(f"http://127.0.0.1:{port}/")
        # node labels of the default (all-stages) DAG
        _wait_for_text(browser, ["ingest_faces", "analyse_class_balance", "train_autoencoder",
                                 "assemble_training_set", "train_resnet", "evaluate_model", "predict_emotions"])
        # the DAG itself is drawn: one SVG node per pipeline node and dataset
        deadline = time.time() + 30
        while time.time() < deadline and len(browser.find_elements("css selector", "svg .pipeline-node")) < 20:
            time.sleep(1)
        assert len(browser.find_elements("css selector", "svg .pipeline-node")) >= 20
        browser.save_screenshot(str(demo_project / "data/08_reporting/kedro_viz.png"))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/main", timeout=10) as response:
            graph = json.load(response)
        pipelines = {p["id"] for p in graph["pipelines"]}
        # Kedro layers are drawn as bands (kedro-viz drops them all if their order is circular)
        assert graph["layers"] == ["raw", "primary", "feature", "model_input", "models", "model_output", "reporting"]
        assert {"ingestion", "class_balance", "autoencoder", "augmentation", "training", "evaluate",
                "predict", "__default__"} <= pipelines
    finally:
        pids = _stop(server)
    assert not any(_alive(p) for p in pids), "kedro viz left processes behind"


def test_mlflow_ui_shows_the_demo_run(demo_project, browser):
    from mlflow.tracking import MlflowClient

    db = f"sqlite:///{demo_project / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=db)
    experiment = client.get_experiment_by_name("fer_pipeline_demo")
    run = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])[0]

    port = _free_port()
    server = _start([str(BIN / "mlflow"), "ui", "--backend-store-uri", db, "--host", "127.0.0.1",
                     "--port", str(port), "--workers", "1"], demo_project)
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", server)
        base = f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
        browser.get(base)
        _wait_for_text(browser, ["ingestion.source_path", "eval.test.accuracy"])
        browser.save_screenshot(str(demo_project / "data/08_reporting/mlflow_run.png"))
        browser.get(base + "/artifacts")
        _wait_for_text(browser, ["plots", "model", "reports"])
        browser.save_screenshot(str(demo_project / "data/08_reporting/mlflow_artifacts.png"))
    finally:
        pids = _stop(server)
    assert not any(_alive(p) for p in pids), "mlflow ui left processes behind"
