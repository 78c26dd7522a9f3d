"""The server of ``fer-ui mlflow``: MLflow's own tracking server app, opening on the runs table.

MLflow loads it by name (``mlflow ui --app-name fer_pipeline``, MLflow's ``mlflow.app`` entry
point, declared in ``pyproject.toml``). Measured on mlflow 3.17: a new browser lands on "Welcome
to MLflow" in GenAI mode, the assistant panel opens by itself on the first load, and an
experiment opens on a GenAI overview (traces, token usage), its runs table three clicks away.
The UI keeps those choices in the browser's localStorage; this app's pages store the project's
defaults for the ones not made yet (model training, assistant closed, the UI's usage telemetry
off) before MLflow's scripts run, and send a visit to the bare address to the runs table of
``FER_UI_LANDING_EXPERIMENT`` (set by ``fer-ui mlflow``). A choice made in the UI (the GenAI
switch, say) is kept.
"""

from __future__ import annotations

import os

from mlflow.server.fastapi_app import app

from fer_pipeline.commands.html_pages import first_visit_script, rewrite_html_pages, with_head_script
from fer_pipeline.commands.ui import LANDING_ENVIRONMENT, MLFLOW_DEFAULTS, landing_fragment


def _with_defaults(html: str) -> str:
    landing = landing_fragment(os.environ.get(LANDING_ENVIRONMENT))
    return with_head_script(html, first_visit_script(MLFLOW_DEFAULTS, landing))


rewrite_html_pages(app, _with_defaults)
