"""Small helpers shared by the nodes for MLflow-shaped outputs (no MLflow import needed)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def metric_history(history: Iterable[dict[str, Any]], prefix: str, step_key: str = "epoch") -> dict[str, list[dict]]:
    """Per-epoch dicts -> {"<prefix>.<name>": [{"value": v, "step": epoch}, ...]} for
    kedro-mlflow's MlflowMetricsHistoryDataset. Non-numeric and non-finite values are skipped."""
    out: dict[str, list[dict]] = {}
    for row in history:
        step = int(row[step_key])
        for key, value in row.items():
            if key == step_key or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                continue
            out.setdefault(f"{prefix}.{key}", []).append({"value": float(value), "step": step})
    return out


def active_run_id() -> str | None:
    """The MLflow run this `kedro run` logs to, if kedro-mlflow started one."""
    try:
        import mlflow
    except ImportError:  # the ML core runs without MLflow
        return None
    run = mlflow.active_run()
    return run.info.run_id if run else None


def point_metrics(values: dict[str, float], step: int = 0) -> dict[str, dict]:
    """{"name": value} -> {"name": {"value": value, "step": step}} (non-finite values dropped)."""
    return {key: {"value": float(v), "step": step} for key, v in values.items() if math.isfinite(float(v))}


def set_tags(tags: dict[str, Any]) -> None:
    """Tag the active MLflow run (device names, versions); a no-op without one."""
    try:
        import mlflow
    except ImportError:
        return
    if mlflow.active_run():
        mlflow.set_tags({key: str(value) for key, value in tags.items() if value is not None})

