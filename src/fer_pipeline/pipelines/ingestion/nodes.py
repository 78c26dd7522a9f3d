"""Ingestion nodes: find (or, in the demo, generate) the source, read it, report its quality."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from fer_pipeline.core.classes import SPLITS
from fer_pipeline.core.ingestion.dataset import build_dataset
from fer_pipeline.kedro_glue.tracking import point_metrics

log = logging.getLogger(__name__)


class MissingSourceError(FileNotFoundError):
    """The configured dataset is not where the parameters say."""


def prepare_source(params: dict[str, Any]) -> dict[str, Any]:
    """Check that the source exists; in the demo environment generate the synthetic faces first."""
    path = Path(params["source_path"])
    demo = params.get("demo")
    if demo:
        from fer_pipeline.demo import generate_demo_dataset

        summary = generate_demo_dataset(path, **demo)
        log.info("Demo faces (synthetic, not FER2013) ready in %s: %s", path, summary.get("counts"))
    check_source(params)
    return {"path": path.as_posix(), "kind": params["source_kind"], "demo": bool(demo)}


def check_source(params: dict[str, Any]) -> Path:
    """``ingestion.source_path``, or ``MissingSourceError`` (what to do) when nothing is there; the
    Kedro hook ``ParameterChecks`` asks before the run (unless the demo draws the faces there)."""
    path = Path(params["source_path"])
    if not path.exists():
        raise MissingSourceError(
            f"No dataset at '{path}' (ingestion.source_path). Put FER2013 there (train/<class>/*.jpg and "
            "test/<class>/*.jpg, or fer2013.csv), or point to it with `kedro run --params "
            "ingestion.source_path=/path/to/fer2013`. To try the project without FER2013, run the demo: "
            "`kedro run --env demo`."
        )
    return path


def ingest_faces(
    source: dict[str, Any], params: dict[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, float]]:
    """Read every face, quarantine bad items, find duplicates and apply the duplicate policy."""
    dataset, report = build_dataset(source["path"], params, kind=source["kind"], progress=True)
    report["source_path"] = source["path"]
    report["synthetic_demo_data"] = source["demo"]
    log.info(
        "Ingested %d items: kept %d, quarantined %d; %d duplicate groups (%d across splits, %d conflicting)",
        report["read"], report["kept"], report["quarantined"], report["duplicates"]["groups"],
        report["duplicates"]["cross_split_groups"], report["duplicates"]["conflicting_label_groups"],
    )
    return dataset, report, point_metrics(ingestion_metrics(report))


def ingestion_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The report's headline figures as flat MLflow metrics."""
    metrics = {f"ingestion.{key}": float(report[key]) for key in ("read", "kept", "quarantined")}
    for key in ("groups", "cross_split_groups", "train_test_groups", "conflicting_label_groups"):
        metrics[f"ingestion.duplicates.{key}"] = float(report["duplicates"][key])
    for split in SPLITS:
        for name, count in report["counts"].get(split, {}).items():
            metrics[f"ingestion.count.{split}.{name}"] = float(count)
    for reason, count in report.get("reasons", {}).items():  # e.g. ferplus_no_majority, corrupt_image
        metrics[f"ingestion.quarantined.{reason}"] = float(count)
    return metrics
