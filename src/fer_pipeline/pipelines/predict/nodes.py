"""Predict stage: detect faces in ordinary photos and classify their expression."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fer_pipeline.core.models import load_model
from fer_pipeline.core.predict import predict_photos, result_table
from fer_pipeline.datasets import ModelFile
from fer_pipeline.pipelines.tracking import point_metrics

log = logging.getLogger(__name__)


def prepare_photos(params: dict[str, Any]) -> dict[str, Any]:
    """Locate the input photos; the demo environment draws a few synthetic ones first."""
    inputs = [Path(p) for p in ([params["inputs"]] if isinstance(params["inputs"], str) else params["inputs"])]
    demo = params.get("demo_photos")
    if demo:
        from fer_pipeline.demo import write_demo_photos

        write_demo_photos(inputs[0], **demo)
    existing = [p.as_posix() for p in inputs if p.exists()]
    if not existing:
        log.warning("No photos at %s: put JPEG/PNG photos there or pass --params predict.inputs=<folder>",
                    ", ".join(p.as_posix() for p in inputs))
    return {"inputs": existing}


def predict_emotions(
    photos: dict[str, Any], resnet_model: ModelFile, params: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, float]]:
    from PIL import Image

    model, config = load_model(resnet_model.require(), map_location="cpu")
    result = predict_photos(
        photos["inputs"], model, config, margin=params["margin"], tta=params["tta"],
        device=params["device"], progress=True,
    )
    table = result_table(result)
    annotated = {Path(name).stem: Image.fromarray(np.asarray(img)) for name, img in result.annotated.items()}
    metrics = {
        "predict.files": float(len(set(table["file"]))) if len(table) else 0.0,
        "predict.faces": float((table["status"] == "face").sum()) if len(table) else 0.0,
        "predict.no_face": float(len(result.no_face)),
        "predict.unreadable": float(len(result.unreadable)),
    }
    for item in result.unreadable:
        log.warning("Unreadable: %s (%s)", item["file"], item["reason"])
    log.info("Predicted %d faces; %d images without a face; %d unreadable",
             metrics["predict.faces"], metrics["predict.no_face"], metrics["predict.unreadable"])
    return table, annotated, point_metrics(metrics)
