"""Class-balance analysis: counts, imbalance ratios, class weights and log-priors per split."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fer_pipeline import plots
from fer_pipeline.core.class_balance.summary import class_balance_summary
from fer_pipeline.kedro_glue.tracking import point_metrics


def analyse_class_balance(
    fer_dataset: dict[str, np.ndarray], params: dict[str, Any]
) -> tuple[dict[str, Any], pd.DataFrame, Any, dict[str, float]]:
    summary, rows = class_balance_summary(fer_dataset, params)
    metrics: dict[str, float] = {}
    for split, ratio in summary["imbalance_ratio"].items():
        if np.isfinite(ratio):
            metrics[f"class_balance.imbalance_ratio.{split}"] = ratio
    for name, w_inv, w_eff in zip(summary["classes"], summary["inverse_frequency"], summary["effective_number"]):
        metrics[f"class_balance.weight_inverse_frequency.{name}"] = w_inv
        metrics[f"class_balance.weight_effective_number.{name}"] = w_eff
    return summary, pd.DataFrame(rows), plots.plot_class_counts(rows), point_metrics(metrics)
