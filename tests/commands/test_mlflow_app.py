"""fer-ui mlflow's server app (commands/mlflow_app.py), called in-process as an ASGI app: its pages
carry the project's first-visit defaults and the landing experiment, ahead of MLflow's scripts.
(tests/test_ui.py and tests/test_browser_ui.py start the real server.)"""

from __future__ import annotations

import asyncio

from fer_pipeline.commands.html_pages import first_visit_script
from fer_pipeline.commands.ui import LANDING_ENVIRONMENT, MLFLOW_DEFAULTS, landing_fragment


def _get(app, path: str) -> tuple[int, str]:
    """One GET request through ``app``'s ASGI interface: (status, body)."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1")], "server": ("127.0.0.1", 5000), "client": ("127.0.0.1", 40000)}
    asyncio.run(app(scope, receive, send))
    status = next(message["status"] for message in sent if message["type"] == "http.response.start")
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    return status, body.decode("utf-8")


def test_the_pages_store_the_projects_defaults_and_land_on_the_experiment_named(monkeypatch):
    from fer_pipeline.commands.mlflow_app import app

    monkeypatch.setenv(LANDING_ENVIRONMENT, "3")
    status, page = _get(app, "/")
    assert status == 200
    script = first_visit_script(MLFLOW_DEFAULTS, landing_fragment("3"))
    assert script in page and "#/experiments/3/runs" in page
    assert page.index(script) < page.index("<script", page.index(script) + len(script))  # before MLflow's own

    monkeypatch.delenv(LANDING_ENVIRONMENT)  # read on each request: no experiment named, no landing
    status, page = _get(app, "/")
    assert status == 200 and first_visit_script(MLFLOW_DEFAULTS, "") in page and "#/experiments/" not in page
