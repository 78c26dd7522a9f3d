"""kedro-viz and the MLflow UI after a demo run, loaded in headless Chromium.

Skipped with a reason when Chromium or its driver is missing (`.ci/run` installs Debian's
`chromium` and `chromium-driver`). Servers bind to 127.0.0.1 and are stopped, children
included, by PID. Screenshots go to the demo project's data/demo/08_reporting/.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from fer_pipeline.processes import alive, free_port, start, stop, wait_http

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
BIN = Path(sys.executable).parent


@pytest.fixture
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # every request the page makes
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


def _requested_hosts(driver) -> set[str]:
    """The host of every request the browser sent since the last call (DevTools' network log)."""
    hosts = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith(("data:", "blob:", "about:")):
                hosts.add(urllib.parse.urlsplit(url).hostname)
    return hosts


STAGES = ["ingestion", "class_balance", "autoencoder", "augmentation", "training", "evaluate", "package_model",
          "predict"]


def _zoom_percent(driver) -> int:
    """The zoom kedro-viz shows in its toolbar (``118%``)."""
    shown = re.findall(r"^(\d+)%$", driver.find_element("tag name", "body").text, re.MULTILINE)
    assert shown, "kedro-viz shows no zoom level"
    return int(shown[-1])


def _drawn(driver, then=lambda nodes: [node.text for node in nodes]):
    """``then`` of the nodes kedro-viz draws now, retried while it redraws (stale elements)."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(20):
        try:
            return then(driver.find_elements("css selector", "svg .pipeline-node"))
        except StaleElementReferenceException:
            time.sleep(0.5)
    raise AssertionError("kedro-viz kept redrawing its graph")


def _drawn_names(driver) -> set[str]:
    return set(_drawn(driver))


def test_kedro_viz_opens_on_the_stages(demo_project, browser):
    port = free_port()
    server = start([str(BIN / "fer-ui"), "viz", "--port", str(port), "--env", "demo"], demo_project)
    try:
        wait_http(f"http://127.0.0.1:{port}/api/main", server)
        browser.get(f"http://127.0.0.1:{port}/")
        _wait_for_text(browser, STAGES)
        # A first visit draws one collapsed box per stage and no dataset: readable at first sight,
        # not 44 datasets at 17 % zoom; no feature tour over it (it opened at once before).
        deadline = time.time() + 30
        while time.time() < deadline and len(_drawn(browser)) < len(STAGES):
            time.sleep(1)
        time.sleep(3)  # the tour, when shown, opens after the graph
        assert sorted(_drawn(browser)) == sorted(STAGES)
        assert _zoom_percent(browser) >= 60
        text = browser.find_element("tag name", "body").text
        assert "1 of 6" not in text and "Workflow run status" not in text  # kedro-viz's feature tour
        assert "None is here" not in text  # the banner kedro-viz shows when its PyPI lookup fails
        browser.save_screenshot(str(demo_project / "data/demo/08_reporting/kedro_viz.png"))

        # A stage expands to its nodes; the datasets are one switch away, and a user's choices stay.
        _drawn(browser, lambda nodes: next(node for node in nodes if node.text == "evaluate").click())
        deadline = time.time() + 30
        while time.time() < deadline and "evaluate_external" not in _drawn_names(browser):
            time.sleep(1)
        assert {"evaluate_model", "evaluate_external", "training"} <= _drawn_names(browser)
        stored = json.loads(browser.execute_script("return localStorage.getItem('KedroViz')"))
        stored["nodeType"]["disabled"]["data"] = False
        browser.execute_script("localStorage.setItem('KedroViz', arguments[0])", json.dumps(stored))
        browser.refresh()
        _wait_for_text(browser, ["fer_dataset", "resnet_model", "confusion_matrix_plot"])
        browser.save_screenshot(str(demo_project / "data/demo/08_reporting/kedro_viz_datasets.png"))
        assert _requested_hosts(browser) == {"127.0.0.1"}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/main", timeout=10) as response:
            graph = json.load(response)
        pipelines = {p["id"] for p in graph["pipelines"]}
        # Kedro layers stay declared (kedro-viz drops them all if their order is circular)
        assert graph["layers"] == ["raw", "primary", "feature", "model_input", "models", "model_output", "reporting"]
        assert {"ingestion", "class_balance", "autoencoder", "augmentation", "training", "evaluate",
                "predict", "__default__"} <= pipelines
        assert set(STAGES) <= {node["id"] for node in graph["nodes"] if node["type"] == "modularPipeline"}
    finally:
        pids = stop(server)
    assert not any(alive(p) for p in pids), "fer-ui viz left processes behind"


def test_mlflow_ui_opens_on_the_runs_table(demo_project, browser):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{demo_project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fer_pipeline_demo")
    run = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])[0]

    port = free_port()
    server = start([str(BIN / "fer-ui"), "mlflow", "--port", str(port)], demo_project)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", server)
        # The bare address opens on the latest run's experiment, its runs table, in model-training
        # mode: before, "Welcome to MLflow" in GenAI mode, the assistant open, a telemetry banner.
        browser.get(f"http://127.0.0.1:{port}/")
        text = _wait_for_text(browser, ["Runs", run.info.run_name, "Model training"])
        url = browser.current_url
        assert f"#/experiments/{experiment.experiment_id}/runs" in url, url
        time.sleep(1)  # the assistant, when it opens by itself, opens with the page's first render
        text = browser.find_element("tag name", "body").text
        for noise in ("Welcome to MLflow", "MLflow Assistant", "Information about UI telemetry", "Traces over time"):
            assert noise not in text, noise
        assert browser.execute_script("return localStorage.getItem('mlflow.settings.telemetry.enabled_v1')") == "false"
        browser.save_screenshot(str(demo_project / "data/demo/08_reporting/mlflow_runs.png"))

        base = f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
        browser.get(base)
        _wait_for_text(browser, ["ingestion.source_path", "eval.test.accuracy"])
        browser.save_screenshot(str(demo_project / "data/demo/08_reporting/mlflow_run.png"))
        browser.get(base + "/artifacts")
        _wait_for_text(browser, ["plots", "model", "reports"])
        browser.save_screenshot(str(demo_project / "data/demo/08_reporting/mlflow_artifacts.png"))

        # A choice made in the UI is kept: GenAI mode chosen stays chosen on the next visit.
        browser.execute_script("localStorage.setItem('mlflow.workflowType_v1', '\"genai\"')")
        browser.get(f"http://127.0.0.1:{port}/#/experiments")  # the page's first script has run when get returns
        assert browser.execute_script("return localStorage.getItem('mlflow.workflowType_v1')") == '"genai"'
        assert _requested_hosts(browser) == {"127.0.0.1"}
    finally:
        pids = stop(server)
    assert not any(alive(p) for p in pids), "fer-ui mlflow left processes behind"
