"""Evaluate stage: metrics, calibration and plots on a held-out split (PrivateTest by default)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fer_pipeline import plots
from fer_pipeline.core.evaluation.metrics import HEADLINE_KEYS, softmax
from fer_pipeline.core.evaluation.protocol import CHOOSE_ON_VAL
from fer_pipeline.core.evaluation.protocol import evaluate_model as evaluate_protocol
from fer_pipeline.core.evaluation.split import EVALUATE_KEYS
from fer_pipeline.core.ingestion.dataset import class_names
from fer_pipeline.core.model_files import download_run_model
from fer_pipeline.core.models import load_model
from fer_pipeline.kedro_glue.datasets import ModelFile
from fer_pipeline.kedro_glue.tracking import point_metrics, set_tags

log = logging.getLogger(__name__)


def resolve_model(model_file: ModelFile, run_id: str | None) -> tuple[Path, str | None]:
    """The local model file, or the one logged by MLflow run ``run_id``."""
    if not run_id:
        return model_file.require(), None
    return download_run_model(run_id, tempfile.mkdtemp(prefix="fer_model_")), run_id


def evaluate_model(resnet_model: ModelFile, fer_dataset: dict[str, np.ndarray], params: dict[str, Any]):
    """The split as ``evaluate.tta`` says (``core.evaluation.protocol``: a fixed mode, or the one
    chosen on val), with its tables, figures and MLflow metrics."""
    path, run_id = resolve_model(resnet_model, params.get("model_run_id"))
    model, config = load_model(path, map_location="cpu")
    name = f"the model of MLflow run {run_id}" if run_id else f"the model {path}"
    protocol = evaluate_protocol(model, config, fer_dataset, params, progress=True, model_name=name)
    evaluation, split, tta = protocol.chosen, params["split"], protocol.tta
    report = {**evaluation.report, "model": path.as_posix(),
              "training_run_id": run_id or config.get("mlflow_run_id")}
    if protocol.selection:
        report["tta_selection"] = {**protocol.selection, "reports": {
            name: {mode: {key: scored[key] for key in HEADLINE_KEYS} for mode, scored in modes.items()}
            for name, modes in protocol.reports.items()}}
    _tag_training_run(report["training_run_id"])
    set_tags({"evaluate.dataset_check": report["dataset_check"]["status"]})

    classes = class_names(fer_dataset)
    images, labels = fer_dataset["images"][evaluation.mask], fer_dataset["labels"][evaluation.mask]
    probs = softmax(evaluation.logits)
    predictions = pd.DataFrame({
        "source_id": fer_dataset["source_ids"][evaluation.mask], "label": [classes[i] for i in labels],
        "predicted": [classes[i] for i in probs.argmax(1)], "confidence": probs.max(1),
        **{f"prob_{name}": probs[:, i] for i, name in enumerate(classes)},
    })
    for label_set_name, other in evaluation.label_sets.items():  # other label sets' verdicts; empty: none
        predictions[f"label_{label_set_name}"] = [classes[i] if i >= 0 else "" for i in other]
    metrics = {f"eval.{split}.{key}": float(report[key])
               for key in ("accuracy", "balanced_accuracy", "macro_f1", "top2_accuracy", "ece")}
    for row in report["per_class"]:
        metrics[f"eval.{split}.recall.{row['class']}"] = float(row["recall"])
    log.info("%s (%s, tta=%s): accuracy %.4f, macro-F1 %.4f, balanced accuracy %.4f",
             split, len(labels), tta, report["accuracy"], report["macro_f1"], report["balanced_accuracy"])
    clean = report["without_leaked_duplicates"]
    if clean:
        for key in ("accuracy", "balanced_accuracy", "macro_f1"):
            metrics[f"eval.{split}.without_leaked.{key}"] = clean[key]
        log.info("%s without %d leaked duplicates (%d): accuracy %.4f, macro-F1 %.4f", split, clean["excluded"],
                 clean["n"], clean["accuracy"], clean["macro_f1"])
    metrics.update(label_set_metrics(report, split))
    return (
        report, pd.DataFrame(report["per_class"]), predictions,
        plots.plot_confusion_matrix(report["confusion"], classes, normalized=False),
        plots.plot_confusion_matrix(report["confusion_normalized"], classes, normalized=True),
        plots.plot_reliability(report),
        plots.plot_confident_mistakes(images, labels, evaluation.logits, classes, n=24),
        plots.plot_per_class(report["per_class"]),
        point_metrics(metrics),
    )


def label_set_metrics(report: dict[str, Any], split: str) -> dict[str, float]:
    """``eval.<split>.<label set>.*`` for each other label set the split was scored against
    (``core.evaluation.split.score_label_set``), each logged with how many faces it labels."""
    metrics = {}
    for name, scored in report.get("label_sets", {}).items():
        log.info("%s against %s labels (%d faces, %d without a label): %s", split, name, scored["n"],
                 scored["excluded"], ", ".join(f"{key} {scored[key]:.4f}" for key in HEADLINE_KEYS if key in scored))
        if not scored["n"]:
            continue
        prefix = f"eval.{split}.{name}"
        metrics.update({f"{prefix}.{key}": float(scored[key]) for key in (*HEADLINE_KEYS, "n", "excluded",
                                                                          "agreement_with_dataset_labels")})
        metrics.update({f"{prefix}.recall.{cls}": value for cls, value in scored["recall"].items()})
    return metrics


def _tag_training_run(run_id: str | None) -> None:
    """Link this evaluation to the MLflow run that trained the model."""
    if not run_id:
        return
    import mlflow

    if mlflow.active_run():
        mlflow.set_tag("training_run_id", run_id)


def evaluate_external(resnet_model: ModelFile, params: dict[str, Any], predict_params: dict[str, Any],
                      evaluation_report: dict[str, Any] | None = None):
    """Cross-dataset evaluation on the sets of ``evaluate.external_sets`` (``core.evaluation.external_sets``):
    (report {set name: entry}, MLflow metrics ``eval.external.<name>.*``, {set name: confusion
    figure}). No sets: an empty report, no metrics, no figures, and the model is not read. The
    sets are scored with the TTA mode the split was (``evaluation_report["tta"]``: the one chosen
    on val under ``evaluate.tta: choose_on_val``)."""
    from fer_pipeline.core.config import reject_unknown_keys
    from fer_pipeline.core.evaluation import external_sets as external_eval

    reject_unknown_keys(params, EVALUATE_KEYS, "evaluate")
    external_sets = params.get("external_sets") or {}
    if not external_sets:
        return {}, {}, {}
    external_eval.parse_external_sets(external_sets)  # parameter mistakes fail before the model is read
    path, run_id = resolve_model(resnet_model, params.get("model_run_id"))
    model, config = load_model(path, map_location="cpu")
    reports = external_eval.evaluate_external_sets(
        model, config, external_sets, tta=reported_tta(params, evaluation_report), batch_size=params["batch_size"], device=params["device"],
        margin=predict_params["margin"], progress=True, amp=params.get("amp", "auto"))
    figures = {}
    for name, report in reports.items():
        report["model"] = path.as_posix()
        report["training_run_id"] = run_id or config.get("mlflow_run_id")
        scores = report["metrics"]
        log.info("external set %s (%s, %d files, %d scored, %d without a face, %d unreadable, %d dropped by "
                 "class_map): accuracy %.4f, macro-F1 %.4f, balanced accuracy %.4f", name, report["kind"],
                 report["files"], report["scored"], report["no_face"], report["unreadable"],
                 sum(report["dropped_by_class_map"].values()), scores["accuracy"], scores["macro_f1"],
                 scores["balanced_accuracy"])
        figures[name] = plots.plot_confusion_matrix(
            report["confusion"], report["classes"], normalized=False, columns=report["confusion_columns"],
            title=f"{name} ({report['kind']}): accuracy {scores['accuracy']:.3f}, n={scores['n']}")
    return reports, point_metrics(external_eval.flat_metrics(reports)), figures


def reported_tta(params: dict[str, Any], evaluation_report: dict[str, Any] | None) -> str:
    """The TTA mode the evaluate split was reported with: the fixed one, or the one chosen on val."""
    if params["tta"] != CHOOSE_ON_VAL:
        return params["tta"]
    if not evaluation_report or "tta" not in evaluation_report:
        raise ValueError("evaluate.tta is choose_on_val: the external sets are scored after evaluate_model "
                         "has chosen the mode (run the whole evaluate pipeline)")
    return evaluation_report["tta"]
