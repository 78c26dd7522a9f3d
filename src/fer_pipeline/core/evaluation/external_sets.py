"""Cross-dataset evaluation: the trained model scored on an external labelled set (CK+, JAFFE, ...).

Each set is one entry of ``evaluate.external_sets`` (``conf/base/parameters_evaluate.yml``).
The route, per set: 1. **List** and 2. **Label** its files (``external_listing``: the
parameters, the class folders or ``label_pattern``, ``class_map``); all sets are listed and
labelled before any is scored, so a typo fails in seconds. Then, here:

3. **Faces.** ``crops``: each file is decoded exactly as ingestion decodes training faces
   (``ingestion.decode.decode_items``: grayscale, area resize to 48x48). ``photos``: each file
   is decoded as the predict stage decodes photos (``faces.images.load_image``), its faces found by
   the set's ``detector`` (``yunet``, the predict stage's default, or ``haar``; the ``FaceFinder`` of
   ``faces.recognizer``, with the predict stage's ``margin``; the small-image "already a crop" fallback
   is off: a photo set is photos), and the largest face is scored (photos with more than one face are counted in ``multiple_faces``).
   A photo with no face gets no prediction: it counts as wrong, in the confusion matrix's
   ``no_face`` column. Files that cannot be decoded are not scored; they are counted and listed
   with their reason (``unreadable``), and the run goes on.
4. **Classify.** ``inference.predict_logits``, the one inference path, with the evaluate
   stage's ``tta``, ``batch_size`` and ``device``.
5. **Score.** ``metrics.prediction_metrics``, the same counting as FER2013's: accuracy,
   macro-F1 and balanced accuracy over the classes present in the set's labels, per-class
   recall, and a K x (K+1) confusion matrix (rows = true class, last column ``no_face``).

Only NumPy / torch / the rest of ``core`` at module level (OpenCV comes in through
``core.faces``' lazy imports, for photos only).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_pipeline.core.classes import IMAGE_SIZE
from fer_pipeline.core.device import autocast_dtype_for, precision_name, resolve_device, synchronize
from fer_pipeline.core.evaluation.external_listing import (
    MISMATCH_SHOWN,
    ExternalSet,
    ExternalSetError,
    Listing,
    list_external_set,
    model_classes,
    parse_external_sets,
)
from fer_pipeline.core.evaluation.metrics import NO_PREDICTION, prediction_metrics
from fer_pipeline.core.inference import predict_logits

log = logging.getLogger(__name__)

#: The label of the confusion column of photos where no face was found.
NO_FACE = "no_face"

#: File names listed in a report's lists (unreadable, no_face, ...); their counts are complete.
LIST_LIMIT = 100


# --------------------------------------------------------------------------------------------
# Faces
# --------------------------------------------------------------------------------------------


@dataclass
class Faces:
    """One face per scored file, in listing order, and what happened to the others."""

    #: (F, 48, 48) uint8 crops of the files that have a face
    crops: np.ndarray
    #: (R,) class index of every readable file
    labels: np.ndarray
    #: (R,) True where the file has a crop (row order: crops are the True rows, in order)
    has_face: np.ndarray
    unreadable: list[dict[str, str]]
    no_face: list[str]
    multiple_faces: list[str]


def crop_faces_of(listing: Listing) -> Faces:
    """``crops``: every file decoded exactly as ingestion decodes training faces."""
    from fer_pipeline.core.ingestion.decode import decode_items
    from fer_pipeline.core.ingestion.sources import Item

    items = [Item(rel, str(path), None, label) for rel, path, label in listing.files]
    images, kept, _hashes, quarantine = decode_items(
        items, on_error="quarantine", colour="convert", size="convert", image_size=IMAGE_SIZE, workers=None,
        progress=False)
    labels = np.array([label for *_, label in listing.files], dtype=np.int64)[kept]
    unreadable = [{"file": q["item"], "reason": q["reason"]} for q in quarantine]
    return Faces(images[kept], labels, np.ones(len(labels), bool), unreadable, [], [])


def photo_faces_of(listing: Listing, finder: Any) -> Faces:
    """``photos``: each photo decoded as the predict stage does, its largest face found by
    ``finder`` (a ``faces.recognizer.FaceFinder``) cropped."""
    from fer_pipeline.core.faces.images import UnreadableImageError, load_image

    crops: list[np.ndarray] = []
    labels: list[int] = []
    has_face: list[bool] = []
    unreadable: list[dict[str, str]] = []
    no_face: list[str] = []
    multiple: list[str] = []
    for rel, path, label in listing.files:
        try:
            image = load_image(path)
        except UnreadableImageError as error:
            unreadable.append({"file": rel, "reason": str(error)})
            continue
        found = finder.find(image)
        labels.append(label)
        has_face.append(bool(found.boxes))
        if not found.boxes:
            no_face.append(rel)
            continue
        if len(found.boxes) > 1:
            multiple.append(rel)
        largest = int(np.argmax([w * h for _x, _y, w, h in found.boxes]))
        crops.append(found.crops[largest])
    stacked = np.stack(crops) if crops else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    return Faces(stacked, np.array(labels, dtype=np.int64), np.array(has_face, bool), unreadable, no_face, multiple)


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


def _capped(values: list) -> list:
    return values[:LIST_LIMIT]


def score_external_set(
    model: nn.Module,
    config: Mapping[str, Any],
    spec: ExternalSet,
    listing: Listing,
    tta: str = "none",
    batch_size: int = 256,
    device: str | torch.device | None = "auto",
    margin: float = 0.2,
    detector: Any = None,
    progress: bool = False,
    amp: bool | str = "auto",
) -> dict[str, Any]:
    """Decode, find faces, classify and score one listed set: its report (JSON-serialisable).

    Keys: name, path, kind, label_source (folder | file_name), label_pattern, class_map (as
    configured), resolved_class_names, files (image files found), dropped_by_class_map, labelled,
    unreadable (count; ``unreadable_files``: {file, reason}), scored (faces classified), no_face,
    multiple_faces (counts; ``*_files``: their names), ignored (count; ``ignored_files``),
    unused_class_map_keys, label_counts (readable files per true class), metrics (n, accuracy,
    macro_f1, balanced_accuracy, no_face_rate, accuracy_on_faces, classes_present), per_class,
    confusion (K x (K+1), rows = true class, last column ``no_face``), confusion_normalized,
    confusion_columns, classes, tta, precision (``float32`` or ``bfloat16``, as ``amp`` chose), seconds.
    File lists hold at most ``LIST_LIMIT`` names."""
    classes = model_classes(config)
    start = time.perf_counter()
    faces = _faces_of(spec, listing, detector, margin)
    torch_device = resolve_device(device)
    predictions = _predictions(model, config, faces, torch_device, tta=tta, batch_size=batch_size,
                               progress=progress, amp=amp)
    scores = prediction_metrics(faces.labels, predictions, classes, f1_average="labels", no_prediction=NO_FACE)
    return {
        **_set_report(spec, listing, precision_name(autocast_dtype_for(amp, torch_device))),
        **_counts_report(listing, faces),
        **_scores_report(scores, faces.labels, classes),
        "tta": tta,
        "seconds": time.perf_counter() - start,
    }


def _faces_of(spec: ExternalSet, listing: Listing, detector: Any, margin: float) -> Faces:
    """The set's faces (``crop_faces_of`` or ``photo_faces_of``, with a new detector of the set's
    settings when none is given), its unreadable files logged; ``ExternalSetError`` when no file could be read."""
    if spec.kind == "crops":
        faces = crop_faces_of(listing)
    else:
        from fer_pipeline.core.faces.recognizer import FaceFinder

        faces = photo_faces_of(listing, FaceFinder.make(detector or spec.make_detector(), margin=margin,
                                                        whole_image_max_side=0, align=spec.align))
    for item in faces.unreadable:
        log.warning("%s: unreadable, not scored: %s (%s)", spec.where, item["file"], item["reason"])
    if not len(faces.labels):
        raise ExternalSetError(f"{spec.where}: none of its {len(listing.files)} labelled files could be read: "
                               f"{faces.unreadable[:MISMATCH_SHOWN]}")
    return faces


def _predictions(
    model: nn.Module, config: Mapping[str, Any], faces: Faces, device: torch.device, tta: str, batch_size: int,
    progress: bool, amp: bool | str,
) -> np.ndarray:
    """(R,) predicted class index of every readable file, ``NO_PREDICTION`` where it has no face."""
    predictions = np.full(len(faces.labels), NO_PREDICTION, dtype=np.int64)
    if len(faces.crops):
        logits = predict_logits(model, faces.crops, dict(config), tta=tta, batch_size=batch_size,
                                device=device, progress=progress, amp=amp)
        synchronize(device)
        predictions[faces.has_face] = logits.argmax(axis=1)
    return predictions


def _set_report(spec: ExternalSet, listing: Listing, precision: str) -> dict[str, Any]:
    """The report's keys on the set itself: its parameters and how its files were labelled."""
    return {
        "name": spec.name,
        "path": spec.path.as_posix(),
        "kind": spec.kind,
        "detector": spec.detector if spec.kind == "photos" else None,
        "align": spec.align if spec.kind == "photos" else None,
        "precision": precision,
        "label_source": "file_name" if spec.label_pattern else "folder",
        "label_pattern": spec.label_pattern,
        "class_map": dict(spec.class_map),
        "resolved_class_names": dict(listing.resolved),
        "files": listing.found,
        "dropped_by_class_map": dict(listing.dropped_by_class_map),
        "labelled": len(listing.files),
    }


def _counts_report(listing: Listing, faces: Faces) -> dict[str, Any]:
    """The report's counts of files unreadable, scored, without a face, with several, ignored
    (with at most ``LIST_LIMIT`` of their names)."""
    return {
        "unreadable": len(faces.unreadable),
        "unreadable_files": _capped(faces.unreadable),
        "scored": int(faces.has_face.sum()),
        "no_face": len(faces.no_face),
        "no_face_files": _capped(faces.no_face),
        "multiple_faces": len(faces.multiple_faces),
        "multiple_faces_files": _capped(faces.multiple_faces),
        "ignored": len(listing.ignored),
        "ignored_files": _capped(listing.ignored),
        "unused_class_map_keys": list(listing.unused_class_map_keys),
    }


def _scores_report(scores: Mapping[str, Any], labels: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """The report's scores: label counts, headline metrics, per class, the confusion matrix."""
    n = scores["n"]
    counts = np.bincount(labels, minlength=len(classes))
    return {
        "label_counts": {name: int(counts[k]) for k, name in enumerate(classes) if counts[k]},
        "metrics": {
            "n": n,
            "accuracy": scores["accuracy"],
            "macro_f1": scores["macro_f1"],
            "balanced_accuracy": scores["balanced_accuracy"],
            "no_face_rate": scores["no_prediction"] / n,
            "accuracy_on_faces": scores["accuracy_predicted"],
            "classes_present": scores["classes_present"],
        },
        "per_class": scores["per_class"],
        "confusion": scores["confusion"],
        "confusion_normalized": scores["confusion_normalized"],
        "confusion_columns": scores["confusion_columns"],
        "classes": classes,
    }


def check_external_sets(external_sets: Mapping[str, Any] | None, classes: Sequence[str]) -> None:
    """What can go wrong with the sets before a model exists, checked before training starts (the
    runner; the Kedro hook ``fer_pipeline.kedro_glue.hooks.ParameterChecks``): the parameters, each set
    listed and labelled against ``classes`` (the classes the model will have), and OpenCV's face
    detector where a set is ``photos``."""
    specs = parse_external_sets(external_sets)
    for spec in specs:
        list_external_set(spec, classes)
    photos = [spec.where for spec in specs if spec.kind == "photos"]
    if photos:
        try:
            for spec in specs:
                if spec.kind == "photos":
                    spec.make_detector()  # OpenCV and its bundled cascade, or the shipped YuNet file
        except ImportError as error:
            raise ExternalSetError(f"{', '.join(photos)}: kind photos finds faces with OpenCV's detector, and OpenCV "
                                   f"is not importable here ({error}); install opencv-python-headless, or score "
                                   "crops (kind: crops)") from error


def evaluate_external_sets(
    model: nn.Module,
    config: Mapping[str, Any],
    external_sets: Mapping[str, Any] | None,
    tta: str = "none",
    batch_size: int = 256,
    device: str | torch.device | None = "auto",
    margin: float = 0.2,
    progress: bool = False,
    amp: bool | str = "auto",
) -> dict[str, dict[str, Any]]:
    """Set name -> ``score_external_set`` report, for every entry of ``external_sets`` ({} for
    none). Every set is validated, listed and labelled before the first is scored."""
    specs = parse_external_sets(external_sets)
    if not specs:
        return {}
    classes = model_classes(config)
    listings = {spec.name: list_external_set(spec, classes) for spec in specs}
    detectors = {spec.name: spec.make_detector() for spec in specs if spec.kind == "photos"}
    reports = {}
    for spec in specs:
        reports[spec.name] = score_external_set(model, config, spec, listings[spec.name], tta=tta,
                                                batch_size=batch_size, device=device, margin=margin, amp=amp,
                                                detector=detectors.get(spec.name), progress=progress)
    return reports


def flat_metrics(reports: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """``eval.external.<name>.{accuracy,macro_f1,balanced_accuracy,no_face_rate}`` and
    ``eval.external.<name>.recall.<class>`` (the classes present in the set's labels)."""
    flat: dict[str, float] = {}
    for name, report in reports.items():
        prefix = f"eval.external.{name}"
        for key in ("accuracy", "macro_f1", "balanced_accuracy", "no_face_rate"):
            flat[f"{prefix}.{key}"] = float(report["metrics"][key])
        present = set(report["metrics"]["classes_present"])
        for row in report["per_class"]:
            if row["class"] in present:
                flat[f"{prefix}.recall.{row['class']}"] = float(row["recall"])
    return flat
