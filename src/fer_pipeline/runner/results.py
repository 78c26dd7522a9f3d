"""The GPU runner's results: its closing table (stages, metrics per split and TTA, recall per
class, the throughput ratio) and, from a returned folder, the training curves and confusion
matrices drawn by the Kedro nodes' own figures (``fer_pipeline.plots``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fer_pipeline.core.classes import SPLIT_TO_FER_NAME
from fer_pipeline.files import read_csv, save_figure


def results_table(metrics: Mapping[str, Any]) -> str:
    """The closing tables: stages, then metrics per split / TTA, then test recall per class."""
    lines = ["", f"device: {metrics['device'].get('name')} ({metrics['device']['device']}), "
                 f"torch {metrics['device']['torch']}", "",
             f"{'stage':<16}{'seconds':>10}{'peak GPU MiB':>14}  throughput"]
    for name, record in metrics["stages"].items():
        rate = record.get("images_per_s_median", record.get("images_per_s"))
        if isinstance(rate, dict):
            rate = ", ".join(f"{k} {v:,.0f} img/s" for k, v in rate.items() if v)
        elif isinstance(rate, (int, float)):
            rate = f"{rate:,.0f} img/s"
        peak = record.get("peak_gpu_memory_mb")
        lines.append(f"{name:<16}{record['seconds']:>10.1f}{(f'{peak:,.0f}' if peak else '-'):>14}  {rate or ''}")
    lines.append(f"{'total':<16}{sum(r['seconds'] for r in metrics['stages'].values()):>10.1f}")
    selection = metrics["selection"]
    chosen = (f"TTA chosen on val: {selection['tta_selected_on_val']}" if selection.get("tta_selected_on_val")
              else f"TTA: {selection.get('tta', 'none')} (evaluate.tta)")
    lines += ["", f"model selected on {selection['fer_split']} ({selection['split']}) {selection['metric']}: "
                  f"best epoch {selection['best_epoch']}; {chosen}", "",
              f"{'split':<26}{'tta':<10}{'accuracy':>10}{'macro-F1':>10}{'bal. acc':>10}"]
    evaluation = metrics["evaluation"]
    rows = [(f"{SPLIT_TO_FER_NAME[split]} ({split})", tta, report)
            for split in ("val", "test") for tta, report in evaluation.get(split, {}).items()]
    test = evaluation.get("test", {})
    rows += [(f"PrivateTest -{r['without_leaked_duplicates']['excluded']} leaked", tta, r["without_leaked_duplicates"])
             for tta, r in test.items() if r.get("without_leaked_duplicates")]
    for label, tta, r in rows:
        lines.append(f"{label:<26}{tta:<10}{r['accuracy']:>10.4f}{r['macro_f1']:>10.4f}{r['balanced_accuracy']:>10.4f}")
    if test:
        per_mode = [report["per_class"] for report in test.values()]
        lines += ["", "PrivateTest recall per class: " + ", ".join(
            f"{same_class[0]['class']} " + "/".join(f"{row['recall']:.3f}" for row in same_class)
            for same_class in zip(*per_mode))
            + f"  ({'/'.join(test)})"]
    naive = metrics.get("naive_baseline")
    if naive and naive.get("speedup"):  # None when only the fast path was timed (--deadline-s alone)
        lines += ["", f"training step throughput, same process: fast {naive['fast_images_per_s']:,.0f} img/s, "
                      f"naive DataLoader ({naive['naive_workers']} workers) {naive['naive_images_per_s']:,.0f} img/s: "
                      f"{naive['speedup']:.2f}x"]
    return "\n".join(lines)


def draw_figures(folder: Path, dest: Path) -> list[Path]:
    """From a returned folder: training curves (history.csv) and PrivateTest confusion matrices
    without TTA (metrics.json), drawn by the Kedro nodes' own figures (``fer_pipeline.plots``)."""
    import json

    from fer_pipeline import plots

    metrics_path, history_path = folder / "metrics.json", folder / "history.csv"
    for path in (metrics_path, history_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: give the folder the run's files came back to")
    history = read_csv(history_path)
    report = json.loads(metrics_path.read_text(encoding="utf-8")).get("evaluation", {}).get("test", {}).get("none")
    if not history or not report:
        raise ValueError(f"{folder}: the run has no training history or no PrivateTest evaluation yet")
    dest.mkdir(parents=True, exist_ok=True)
    figures = {
        "training_curves.png": plots.plot_training_curves(history),
        "confusion_matrix.png": plots.plot_confusion_matrix(report["confusion"], report["classes"], normalized=False),
        "confusion_matrix_normalized.png": plots.plot_confusion_matrix(report["confusion_normalized"],
                                                                       report["classes"], normalized=True),
    }
    for name, figure in figures.items():
        save_figure(figure, dest / name, dpi=110)
    return [dest / name for name in figures]
