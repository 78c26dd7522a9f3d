"""Cross-dataset evaluation: the trained model scored on an external labelled set (CK+, JAFFE, ...).

Each set is one entry of ``evaluate.external_sets`` (``conf/base/parameters_evaluate.yml``),
named (the name goes into metric keys and file names)::

    ckplus48:
      path: /data/CK+48      # <path>/<class folder>/<image files>
      kind: crops            # crops | photos
      class_map: {anger: angry, sadness: sad, contempt: null}
      label_pattern: null    # or a regex on the file name whose first group is the class name

The route, per set:

1. **List.** Every file under ``path`` (any depth). Hidden files and documentation / metadata
   files (``IGNORED_SUFFIXES``, files without a suffix) are set aside and listed as
   ``ignored``. A file's class name is its top folder below ``path``, or with ``label_pattern``
   the first group of that regex searched in the file name (folders then do not matter; a file
   the pattern does not match stops the run, naming the first few). Without a pattern, files
   lying directly in ``path`` are in no class folder: ignored and listed.
2. **Label.** The model file's classes (``config["classes"]``) are the label space. A class
   name equal to one of them (case-insensitive) is that class; ``class_map`` (case-insensitive
   keys) maps the others, and overrides the identity; ``null`` drops a name's files (counted by
   name in ``dropped_by_class_map``). A name that is neither stops the run with an error listing
   every such name and how to map or drop it; so does a map value that is not a model class.
   All sets are listed and labelled before any is scored, so a typo fails in seconds.
3. **Faces.** ``crops``: each file is decoded exactly as ingestion decodes training faces
   (``ingestion.decode.decode_items``: grayscale, area resize to 48x48). ``photos``: each file
   is decoded as the predict stage decodes photos (``predict.load_image``), its faces found by
   the predict stage's Haar detector (``predict.find_faces``, with the predict stage's
   ``margin``; the small-image "already a crop" fallback is off: a photo set is photos), and the
   largest face is scored (photos with more than one face are counted in ``multiple_faces``).
   A photo with no face gets no prediction: it counts as wrong, in the confusion matrix's
   ``no_face`` column. Files that cannot be decoded are not scored; they are counted and listed
   with their reason (``unreadable``), and the run goes on.
4. **Classify.** ``inference.predict_logits``, the one inference path, with the evaluate
   stage's ``tta``, ``batch_size`` and ``device``.
5. **Score.** ``metrics.prediction_metrics``, the same counting as FER2013's: accuracy,
   macro-F1 and balanced accuracy over the classes present in the set's labels, per-class
   recall, and a K x (K+1) confusion matrix (rows = true class, last column ``no_face``).

Only NumPy / torch / the rest of ``core`` at module level (OpenCV comes in through
``core.predict``'s lazy imports, for photos only).
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_pipeline.core.classes import CLASSES, IMAGE_SIZE
from fer_pipeline.core.config import reject_unknown_keys
from fer_pipeline.core.device import autocast_dtype_for, precision_name, resolve_device, synchronize
from fer_pipeline.core.evaluation.metrics import NO_PREDICTION, prediction_metrics
from fer_pipeline.core.inference import predict_logits

log = logging.getLogger(__name__)

#: The keys of one entry of ``evaluate.external_sets``.
EXTERNAL_SET_KEYS: tuple[str, ...] = ("path", "kind", "class_map", "label_pattern")

#: ``crops``: face crops of any size, grey or colour, decoded as ingestion does; ``photos``:
#: full photos, faces found by the predict stage's detector.
KINDS: tuple[str, ...] = ("crops", "photos")

#: The label of the confusion column of photos where no face was found.
NO_FACE = "no_face"

#: Set names: they become MLflow metric keys and file names.
_SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

#: Files set aside (listed as ``ignored``), not decoded: documentation and metadata next to the
#: images ("" = no suffix, e.g. a README). Hidden files (".DS_Store") are set aside too.
IGNORED_SUFFIXES = frozenset({
    "", ".json", ".md", ".txt", ".rst", ".yml", ".yaml", ".csv", ".tsv", ".xml", ".html", ".htm", ".pdf",
    ".zip", ".tar", ".gz", ".ini", ".db", ".py", ".m", ".mat",
})

#: File names listed in a report's lists (unreadable, no_face, ...); their counts are complete.
LIST_LIMIT = 100

#: File names quoted in the label_pattern mismatch error.
MISMATCH_SHOWN = 5


class ExternalSetError(ValueError):
    """An external set's parameters or files do not make a labelled set (the message says how to fix it)."""


def _norm(name: Any) -> str:
    return str(name).strip().casefold()


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExternalSet:
    """One validated entry of ``evaluate.external_sets``."""

    name: str
    path: Path
    kind: str
    #: as configured: class name -> model class name, or None (drop)
    class_map: dict[str, str | None] = field(default_factory=dict)
    label_pattern: str | None = None

    @property
    def where(self) -> str:
        """Where the entry is, for messages."""
        return f"evaluate.external_sets.{self.name}"

    @classmethod
    def from_params(cls, name: Any, params: Any) -> ExternalSet:
        """Validate one entry: unknown keys (with a hint), a missing path or kind, a map that is not
        a mapping of names to names or null, a pattern that does not compile or has no group."""
        name = str(name)
        if not _SET_NAME.match(name):
            raise ExternalSetError(
                f"external set name {name!r}: use letters, digits, '_', '-' and '.' only, starting with a "
                "letter or digit (the name goes into MLflow metric keys and file names)")
        where = f"evaluate.external_sets.{name}"
        if not isinstance(params, Mapping):
            raise ExternalSetError(f"{where} must be a mapping with keys {', '.join(EXTERNAL_SET_KEYS)}, "
                                   f"got {type(params).__name__}")
        reject_unknown_keys(params, EXTERNAL_SET_KEYS, where)
        if not params.get("path"):
            raise ExternalSetError(f"{where}: no path given (path: <folder of the set>)")
        kind = params.get("kind")
        if kind not in KINDS:
            raise ExternalSetError(f"{where}.kind must be one of {', '.join(KINDS)} (crops: face crops, decoded "
                                   f"as ingestion does; photos: full photos, faces detected first), got {kind!r}")
        class_map = params.get("class_map") or {}
        if not isinstance(class_map, Mapping):
            raise ExternalSetError(f"{where}.class_map must be a mapping (class name -> model class or null), "
                                   f"got {type(class_map).__name__}")
        seen: dict[str, str] = {}
        checked: dict[str, str | None] = {}
        for key, value in class_map.items():
            if value is not None and not isinstance(value, str):
                raise ExternalSetError(f"{where}.class_map[{key!r}] must be a model class name or null, got {value!r}")
            if _norm(key) in seen:
                raise ExternalSetError(f"{where}.class_map names {seen[_norm(key)]!r} and {key!r}, the same name "
                                       "(names are compared case-insensitively)")
            seen[_norm(key)] = str(key)
            checked[str(key)] = value
        pattern = params.get("label_pattern")
        if pattern is not None:
            if not isinstance(pattern, str):
                raise ExternalSetError(f"{where}.label_pattern must be a regular expression string, got {pattern!r}")
            try:
                compiled = re.compile(pattern)
            except re.error as error:
                raise ExternalSetError(f"{where}.label_pattern {pattern!r} is not a regular expression: {error}") \
                    from error
            if compiled.groups < 1:
                raise ExternalSetError(f"{where}.label_pattern {pattern!r} has no group: its first group "
                                       r"must capture the class name, e.g. '^[A-Z]+\.([A-Z]{2})\d'")
        return cls(name, Path(os.path.expanduser(str(params["path"]))), kind, checked, pattern)


def parse_external_sets(params: Mapping[str, Any] | None) -> list[ExternalSet]:
    """Every entry of ``evaluate.external_sets`` validated (None or {} = no sets)."""
    if not params:
        return []
    if not isinstance(params, Mapping):
        raise ExternalSetError(f"evaluate.external_sets must be a mapping of set name -> set, got "
                               f"{type(params).__name__}")
    return [ExternalSet.from_params(name, entry) for name, entry in params.items()]


def model_classes(config: Mapping[str, Any]) -> list[str]:
    """The label space: the class names the model file records (FER2013's for older files)."""
    return [str(c) for c in config.get("classes", CLASSES)]


# --------------------------------------------------------------------------------------------
# Listing and labelling
# --------------------------------------------------------------------------------------------


@dataclass
class Listing:
    """The labelled files of one set, before any byte is read."""

    #: (name relative to the set's path, absolute path, model class index), sorted by name
    files: list[tuple[str, Path, int]]
    #: image files found (labelled + dropped)
    found: int
    #: class name as spelled in the set -> files dropped by ``class_map: null``
    dropped_by_class_map: dict[str, int]
    #: files set aside unread: {file, reason}
    ignored: list[dict[str, str]]
    #: class name as spelled in the set -> model class name (or None: dropped)
    resolved: dict[str, str | None]
    #: class_map keys that named no file of the set
    unused_class_map_keys: list[str]


def _ignore_reason(name: str) -> str | None:
    if name.startswith("."):
        return "hidden file"
    if Path(name).suffix.lower() in IGNORED_SUFFIXES:
        return "not an image (documentation or metadata file)"
    return None


def _walk(folder: Path, root: Path) -> list[tuple[str, Path]]:
    """(posix name relative to root, path) of every file below ``folder``, hidden folders skipped, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for file_name in sorted(filenames):
            path = Path(dirpath) / file_name
            found.append((path.relative_to(root).as_posix(), path))
    return found


def _candidates(spec: ExternalSet) -> tuple[list[tuple[str, Path, str]], list[dict[str, str]]]:
    """(files with their class name as spelled in the set, ignored files)."""
    root = spec.path
    if not root.exists():
        raise FileNotFoundError(f"{spec.where}.path: {root} does not exist (an external set is not shipped "
                                "with the project: download it and point path at its folder)")
    if not root.is_dir():
        raise ExternalSetError(f"{spec.where}.path: {root} is not a folder")
    candidates: list[tuple[str, Path, str]] = []
    ignored: list[dict[str, str]] = []
    if spec.label_pattern is not None:
        pattern = re.compile(spec.label_pattern)
        mismatched: list[str] = []
        for rel, path in _walk(root, root):
            reason = _ignore_reason(path.name)
            if reason:
                ignored.append({"file": rel, "reason": reason})
                continue
            match = pattern.search(path.name)
            if match is None or not match.group(1):
                mismatched.append(rel)
                continue
            candidates.append((rel, path, match.group(1)))
        if mismatched:
            shown = ", ".join(repr(m) for m in mismatched[:MISMATCH_SHOWN])
            more = f" and {len(mismatched) - MISMATCH_SHOWN} more" if len(mismatched) > MISMATCH_SHOWN else ""
            raise ExternalSetError(
                f"{spec.where}: {len(mismatched)} of {len(mismatched) + len(candidates)} image files have a name "
                f"that label_pattern {spec.label_pattern!r} does not match (its first group must capture the "
                f"class name): {shown}{more}. Fix the pattern, or move those files out of {root}")
        return candidates, ignored
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.is_dir():
            if entry.name.startswith("."):
                continue
            for rel, path in _walk(entry, root):
                reason = _ignore_reason(path.name)
                if reason:
                    ignored.append({"file": rel, "reason": reason})
                else:
                    candidates.append((rel, path, entry.name))
        elif entry.is_file():
            reason = _ignore_reason(entry.name) or "not in a class folder (<path>/<class>/<files>)"
            ignored.append({"file": entry.name, "reason": reason})
    return candidates, ignored


def _map_example(names: Sequence[str], classes: Sequence[str]) -> str:
    pairs = []
    for name in names:
        close = difflib.get_close_matches(_norm(name), [_norm(c) for c in classes], n=1, cutoff=0.6)
        target = next((c for c in classes if _norm(c) == close[0]), None) if close else None
        pairs.append(f"{name}: {target if target else 'null'}")
    return "{" + ", ".join(pairs) + "}"


def resolve_class_names(spec: ExternalSet, names: Sequence[str], classes: Sequence[str]) -> dict[str, str | None]:
    """Class name as spelled in the set -> model class name, or None (dropped by the map).

    Raises ``ExternalSetError`` listing every map value that is not a model class, or else every
    name that is neither a model class nor in the map (with a ``class_map`` to start from)."""
    by_norm = {_norm(c): c for c in classes}
    class_map = {_norm(k): v for k, v in spec.class_map.items()}
    bad_targets = {k: v for k, v in spec.class_map.items() if v is not None and _norm(v) not in by_norm}
    if bad_targets:
        listed = ", ".join(f"{k!r} -> {v!r}" for k, v in bad_targets.items())
        raise ExternalSetError(
            f"{spec.where}.class_map maps to names that are not the model's classes: {listed}. The model's "
            f"classes: {', '.join(classes)} (map to one of them, or null to drop the files)")
    resolved: dict[str, str | None] = {}
    unknown: list[str] = []
    for name in names:
        key = _norm(name)
        if key in class_map:
            target = class_map[key]
            resolved[name] = None if target is None else by_norm[_norm(target)]
        elif key in by_norm:
            resolved[name] = by_norm[key]
        else:
            unknown.append(name)
    if unknown:
        raise ExternalSetError(
            f"{spec.where}: {len(unknown)} class name(s) are neither one of the model's classes "
            f"({', '.join(classes)}) nor in class_map: {', '.join(repr(u) for u in unknown)}. Map each to a "
            f"model class, or drop its files with null, in {spec.where}.class_map, e.g. "
            f"class_map: {_map_example(unknown, classes)}")
    return resolved


def list_external_set(spec: ExternalSet, classes: Sequence[str]) -> Listing:
    """The set's labelled files (nothing decoded yet); ``ExternalSetError`` / ``FileNotFoundError``
    when the parameters and the files do not make a labelled set."""
    candidates, ignored = _candidates(spec)
    if not candidates:
        layout = "files whose names label_pattern matches" if spec.label_pattern else "<path>/<class>/<image files>"
        raise ExternalSetError(f"{spec.where}: no image files under {spec.path} (expected {layout}"
                               + (f"; set aside: {len(ignored)} files" if ignored else "") + ")")
    spelled = list(dict.fromkeys(name for *_, name in candidates))
    resolved = resolve_class_names(spec, spelled, classes)
    index = {name: i for i, name in enumerate(classes)}
    files: list[tuple[str, Path, int]] = []
    dropped: Counter[str] = Counter()
    for rel, path, name in candidates:
        target = resolved[name]
        if target is None:
            dropped[name] += 1
        else:
            files.append((rel, path, index[target]))
    if not files:
        raise ExternalSetError(f"{spec.where}: class_map drops every file ({dict(dropped)}): nothing to score")
    used = {_norm(n) for n in spelled}
    unused = [k for k in spec.class_map if _norm(k) not in used]
    return Listing(files, len(candidates), dict(dropped), ignored, resolved, unused)


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


def photo_faces_of(listing: Listing, detector: Any, margin: float) -> Faces:
    """``photos``: each photo decoded as the predict stage does, its largest detected face cropped."""
    from fer_pipeline.core.faces.library import UnreadableImageError, find_faces, load_image

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
        found = find_faces(image, detector, margin=margin, whole_image_max_side=0)
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
    confusion_columns, classes, tta, precision (``float32`` or ``bfloat16``, as ``amp`` chose), seconds. File lists hold at most ``LIST_LIMIT`` names."""
    classes = model_classes(config)
    start = time.perf_counter()
    if spec.kind == "crops":
        faces = crop_faces_of(listing)
    else:
        if detector is None:
            from fer_pipeline.core.faces.library import FaceDetector

            detector = FaceDetector()
        faces = photo_faces_of(listing, detector, margin)
    for item in faces.unreadable:
        log.warning("%s: unreadable, not scored: %s (%s)", spec.where, item["file"], item["reason"])
    if not len(faces.labels):
        raise ExternalSetError(f"{spec.where}: none of its {len(listing.files)} labelled files could be read: "
                               f"{faces.unreadable[:MISMATCH_SHOWN]}")
    predictions = np.full(len(faces.labels), NO_PREDICTION, dtype=np.int64)
    torch_device = resolve_device(device)
    if len(faces.crops):
        logits = predict_logits(model, faces.crops, dict(config), tta=tta, batch_size=batch_size,
                                device=torch_device, progress=progress, amp=amp)
        synchronize(torch_device)
        predictions[faces.has_face] = logits.argmax(axis=1)
    scores = prediction_metrics(faces.labels, predictions, classes, f1_average="labels", no_prediction=NO_FACE)
    n = scores["n"]
    counts = np.bincount(faces.labels, minlength=len(classes))
    return {
        "name": spec.name,
        "path": spec.path.as_posix(),
        "kind": spec.kind,
        "precision": precision_name(autocast_dtype_for(amp, torch_device)),
        "label_source": "file_name" if spec.label_pattern else "folder",
        "label_pattern": spec.label_pattern,
        "class_map": dict(spec.class_map),
        "resolved_class_names": dict(listing.resolved),
        "files": listing.found,
        "dropped_by_class_map": dict(listing.dropped_by_class_map),
        "labelled": len(listing.files),
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
        "tta": tta,
        "seconds": time.perf_counter() - start,
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
        from fer_pipeline.core.faces.library import FaceDetector

        try:
            FaceDetector()  # OpenCV and its bundled cascade
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
    detector = None
    if any(spec.kind == "photos" for spec in specs):
        from fer_pipeline.core.faces.library import FaceDetector

        detector = FaceDetector()
    reports = {}
    for spec in specs:
        reports[spec.name] = score_external_set(model, config, spec, listings[spec.name], tta=tta,
                                                batch_size=batch_size, device=device, margin=margin, amp=amp,
                                                detector=detector, progress=progress)
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
