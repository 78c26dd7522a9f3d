"""Predict stage: detect faces in ordinary photos and videos and classify their expression."""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fer_pipeline.core.faces.detector import DEFAULT_ALIGN, DEFAULT_DETECTOR, DETECT_MAX_SIDE
from fer_pipeline.core.faces.recognizer import EmotionRecognizer
from fer_pipeline.core.predict.inputs import scan_media
from fer_pipeline.core.predict.params import check_predict_params
from fer_pipeline.core.predict.photos import predict_photos, result_table, unique_name
from fer_pipeline.core.predict.video import (
    UnreadableVideoError,
    VideoResult,
    predict_video,
    video_table,
)
from fer_pipeline.kedro_glue.datasets import ModelFile
from fer_pipeline.kedro_glue.tracking import point_metrics

log = logging.getLogger(__name__)


def _input_paths(params: dict[str, Any]) -> list[Path]:
    check_predict_params(params)  # both first nodes (photos, videos) start here
    return [Path(p) for p in ([params["inputs"]] if isinstance(params["inputs"], str) else params["inputs"])]


def prepare_photos(params: dict[str, Any]) -> dict[str, Any]:
    """Locate the input photos: the image files among ``predict.inputs``, named ones and those in
    its folders and their subfolders (``core.predict.inputs.scan_media``, as ``fer-predict``; videos
    left to ``prepare_videos``). A folder's files that are neither, and missing inputs, are
    warnings. The demo environment draws a few synthetic photos first."""
    inputs = _input_paths(params)
    demo = params.get("demo_photos")
    if demo:
        from fer_pipeline.demo import write_demo_photos

        write_demo_photos(inputs[0], **demo)
    missing = [p.as_posix() for p in inputs if not p.exists()]
    if missing:
        log.warning("No photos at %s: put photos (JPEG, PNG, TIFF, ...) or videos there or pass "
                    "--params predict.inputs=<folder>", ", ".join(missing))
    media = scan_media(p for p in inputs if p.exists())
    for line in media.report():
        log.warning("%s", line)
    return {"inputs": [p.as_posix() for p in media.images]}


def prepare_videos(params: dict[str, Any]) -> dict[str, Any]:
    """The video files among ``predict.inputs``: named ones and those in its folders and their
    subfolders (``core.predict.inputs.scan_media``; ``prepare_photos`` reports what is skipped).
    A node of its own, not a second output of ``prepare_photos``, so that photos and videos are
    separate in-memory hand-offs (one Airflow task each)."""
    videos = scan_media(p for p in _input_paths(params) if p.exists()).videos
    if videos:
        log.info("%d video(s) among the inputs", len(videos))
    return {"videos": [v.as_posix() for v in videos]}


def _recognizer(resnet_model: ModelFile, params: dict[str, Any]) -> EmotionRecognizer:
    """The trained model with params:predict's face finding and classifier options, run by its
    ``backend`` (``onnxruntime``: the .pt converted in memory and checked, ``core.backends``)."""
    return EmotionRecognizer.load(
        resnet_model.require(), backend=params.get("backend", "torch"),
        detector=params.get("detector", DEFAULT_DETECTOR),
        detect_max_side=params.get("detect_max_side", DETECT_MAX_SIDE), align=params.get("align", DEFAULT_ALIGN),
        detect_retry_max_side=params.get("detect_retry_max_side"),
        min_score=params.get("min_score"), min_face=params.get("min_face"),
        margin=params["margin"], tta=params["tta"], device=params["device"], amp=params.get("amp", "auto"))


def predict_emotions(
    photos: dict[str, Any], resnet_model: ModelFile, params: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, float]]:
    from PIL import Image

    result = predict_photos(photos["inputs"], _recognizer(resnet_model, params), progress=True,
                            workers=params.get("workers"))
    table = result_table(result)
    # The names are unique file stems already ("photo.v2", "face_2"): taken as they are, not cut again.
    annotated = {name: Image.fromarray(np.asarray(img)) for name, img in result.annotated.items()}
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


def predict_videos(
    video_inputs: dict[str, Any], resnet_model: ModelFile, params: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Path], dict[str, float]]:
    """Each video of ``video_inputs["videos"]`` -> its rows of ``video_predictions`` and an annotated
    MP4 (``annotated_videos`` moves the finished files into its folder). An unreadable video is
    a warning, not fatal; one that breaks off part-way keeps the frames before the break."""
    videos = video_inputs["videos"]
    results: list[VideoResult] = []
    annotated: dict[str, Path] = {}
    unreadable = 0
    if videos:
        recognizer = _recognizer(resnet_model, params)
        staging = _staging_folder()
        for file in videos:
            name = unique_name(Path(file).stem, annotated)
            try:
                result = predict_video(
                    file, recognizer, annotated_path=staging / f"{name}.mp4",
                    every_n_frames=int(params.get("every_n_frames", 1)), workers=params.get("workers"),
                )
            except UnreadableVideoError as error:
                log.warning("Unreadable video: %s", error)
                unreadable += 1
                continue
            results.append(result)
            annotated[name] = result.annotated
    metrics = _video_metrics(results, len(videos), unreadable)
    if videos:
        log.info("Videos: %d read (%d frames, %.1f frames/s), %d faces; %d unreadable, %d broke off part-way",
                 len(results), metrics["predict.video_frames"], metrics["predict.video_fps"],
                 metrics["predict.video_faces"], unreadable, metrics["predict.video_truncated"])
    return video_table(results), annotated, point_metrics(metrics)


def _video_metrics(results: list[VideoResult], files: int, unreadable: int) -> dict[str, float]:
    frames = sum(r.frames_read for r in results)
    seconds = sum(r.seconds for r in results)
    return {
        "predict.video_files": float(files),
        "predict.video_frames": float(frames),
        "predict.video_frames_processed": float(sum(r.frames_processed for r in results)),
        "predict.video_faces": float(sum(r.num_faces for r in results)),
        "predict.video_tracks": float(sum(r.num_tracks for r in results)),
        "predict.video_fps": frames / seconds if seconds > 0 else 0.0,
        "predict.video_unreadable": float(unreadable),
        "predict.video_truncated": float(sum(r.error is not None for r in results)),
    }


def _staging_folder() -> Path:
    """Where the annotated videos are written until ``annotated_videos`` moves them into place;
    removed when the process ends (empty by then after a normal run)."""
    staging = Path(tempfile.mkdtemp(prefix="fer_annotated_videos_"))
    atexit.register(shutil.rmtree, staging, True)
    return staging
