"""Class-balance analysis: counts, imbalance ratios, class weights and log-priors per split."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fer_pipeline.core.classes import SPLITS
from fer_pipeline.core.stages import class_balance_summary
from fer_pipeline.pipelines.tracking import point_metrics


def analyse_class_balance(
    fer_dataset: dict[str, np.ndarray], params: dict[str, Any]
) -> tuple[dict[str, Any], pd.DataFrame, Any, dict[str, float]]:
    summary, rows = class_balance_summary(fer_dataset, params)
    table = pd.DataFrame(rows)
    metrics: dict[str, float] = {}
    for split, ratio in summary["imbalance_ratio"].items():
        if np.isfinite(ratio):
            metrics[f"class_balance.imbalance_ratio.{split}"] = ratio
    for name, w_inv, w_eff in zip(summary["classes"], summary["inverse_frequency"], summary["effective_number"]):
        metrics[f"class_balance.weight_inverse_frequency.{name}"] = w_inv
        metrics[f"class_balance.weight_effective_number.{name}"] = w_eff
    return summary, table, plot_class_counts(table), point_metrics(metrics)


def plot_class_counts(table: pd.DataFrame):
    """Grouped bars: one group per class, one bar per split, counts written on the bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pivot = table.pivot(index="class", columns="split", values="count")
    pivot = pivot[[s for s in SPLITS if s in pivot.columns]]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / max(len(pivot.columns), 1)
    x = np.arange(len(pivot.index))
    for i, split in enumerate(pivot.columns):
        bars = ax.bar(x + i * width, pivot[split].values, width, label=split)
        ax.bar_label(bars, fontsize=7, padding=1)
    ax.set_xticks(x + width * (len(pivot.columns) - 1) / 2, pivot.index)
    ax.set_ylabel("images")
    ratio = pivot["train"].max() / max(pivot["train"].min(), 1) if "train" in pivot else float("nan")
    ax.set_title(f"Class counts per split (train imbalance ratio {ratio:.1f})")
    ax.legend()
    fig.tight_layout()
    return fig
