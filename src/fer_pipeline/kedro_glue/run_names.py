"""MLflow run names that say what ran: ``all stages · demo · 2026-12-04 21:55``.

kedro-mlflow names a run after its pipeline unless ``mlflow.yml`` sets ``tracking.run.name``, so
every ``kedro run`` was called ``__default__`` and the runs table could not tell a demo from a
real run, or a full run from a re-evaluation. ``RunNames`` fills in the name kedro-mlflow will
use just before it starts the run; a name set in ``mlflow.yml`` is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kedro.framework.hooks import hook_impl

#: the run parameters by which a ``kedro run`` runs part of its pipelines
_PARTIAL = ("node_names", "from_nodes", "to_nodes", "from_inputs", "to_outputs", "tags", "namespaces")


def run_name(run_params: Mapping[str, Any], started: datetime) -> str:
    """``<pipelines> · <environment> · <start, to the minute>``; ``__default__`` reads ``all
    stages``, and a run narrowed by ``--nodes``, ``--tags`` and the like says ``(part)``."""
    names = run_params.get("pipeline_names") or run_params.get("pipeline_name") or ["__default__"]
    if isinstance(names, str):
        names = [names]
    what = "+".join("all stages" if name == "__default__" else name for name in names)
    if any(run_params.get(key) for key in _PARTIAL):
        what += " (part)"
    return f"{what} · {run_params.get('env') or 'local'} · {started:%Y-%m-%d %H:%M}"


class RunNames:
    """Names the MLflow run of each ``kedro run`` with ``run_name`` (kedro-mlflow's config,
    ``context.mlflow``, is what its own ``before_pipeline_run`` reads the name from)."""

    def __init__(self) -> None:
        self._mlflow_config = None

    @hook_impl(trylast=True)  # after kedro-mlflow's, which puts its config on the context
    def after_context_created(self, context) -> None:  # noqa: ANN001 - a KedroContext
        self._mlflow_config = getattr(context, "mlflow", None)

    @hook_impl(tryfirst=True)  # before kedro-mlflow's, which starts the run
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        config = self._mlflow_config
        if config is not None and not config.tracking.run.name:
            config.tracking.run.name = run_name(run_params or {}, datetime.now())
