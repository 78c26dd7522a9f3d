"""Ingest a face-emotion dataset into the canonical arrays, check it and report on it.

Three sources, detected from the path (``detect_source_kind``) or named:

- ``fer_folder``: FER2013's folder layout ``{train,test}/<class>/*.jpg``; the file-name prefix
  (``Training_`` / ``PublicTest_`` / ``PrivateTest_``) gives the split train / val / test.
- ``csv``: the contest file ``fer2013.csv`` (columns ``emotion``, ``pixels``, ``Usage``).
- ``image_folder``: any other tree ``[<split>/]<class>/*``. Top-level folders named like splits
  give the split; otherwise the top-level folders are classes and a stratified split is drawn.

Every item looked at ends up either kept or in ``quarantine`` with a reason, so
``read == kept + quarantined`` always holds; ``on_error="fail"`` raises on the first bad item
instead. Faces come out as uint8 ``(N, image_size, image_size)`` grayscale.

Modules: ``sources`` (source kinds, folder listing), ``csv_source`` (fer2013.csv), ``decode``
(bytes -> pixels, OpenCV or Pillow), ``splits`` (stratified draws), ``duplicates`` (identical
faces, ``drop_leaked``), ``report`` (the quality report), ``ferplus`` (FER+ votes joined onto
the contest CSV, and its label modes); ``ingest`` below ties them together.
"""

from __future__ import annotations

import os

import numpy as np

from fer_pipeline.core.classes import IMAGE_SIZE
from fer_pipeline.core.ingestion.csv_source import ingest_csv
from fer_pipeline.core.ingestion.decode import decode_items, decoder_name, opencv
from fer_pipeline.core.ingestion.duplicates import (
    DUPLICATE_POLICIES,
    apply_duplicate_policy,
    find_duplicates,
    leaked_mask,
    leaked_mask_from_groups,
)
from fer_pipeline.core.ingestion.ferplus import (
    CONTEMPT_OPTIONS,
    HARD_LABEL_MODES,
    LABEL_MODES,
    extra_label_sets,
    join_ferplus,
    label_set,
)
from fer_pipeline.core.ingestion.ferplus import check_settings as check_ferplus_settings
from fer_pipeline.core.ingestion.report import (
    REASON_CATEGORIES,
    WARNING_CATEGORIES,
    check_required_splits,
    quality_report,
    reason_category,
)
from fer_pipeline.core.ingestion.result import DATASET_META_KEYS, IngestionError, IngestionResult
from fer_pipeline.core.ingestion.sources import (
    SOURCE_KINDS,
    detect_source_kind,
    list_fer_folder,
    list_image_folder,
    resolve_path,
)
from fer_pipeline.core.ingestion.splits import assign_missing_splits, carve_missing_splits


def _check_options(kind: str, on_error: str, colour: str, size: str, image_size: int,
                   val_fraction: float, test_fraction: float) -> None:
    if kind not in ("auto", *SOURCE_KINDS):
        raise ValueError(f"kind must be 'auto' or one of {SOURCE_KINDS}, got {kind!r}")
    if on_error not in ("quarantine", "fail"):
        raise ValueError(f"on_error must be 'quarantine' or 'fail', got {on_error!r}")
    if colour not in ("convert", "reject"):
        raise ValueError(f"colour must be 'convert' or 'reject', got {colour!r}")
    if size not in ("convert", "reject"):
        raise ValueError(f"size must be 'convert' or 'reject', got {size!r}")
    if int(image_size) < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"need 0 <= val_fraction, test_fraction and their sum < 1, "
                         f"got {val_fraction} and {test_fraction}")


def ingest(
    path: str | os.PathLike,
    kind: str = "auto",
    on_error: str = "quarantine",
    colour: str = "convert",
    size: str = "convert",
    image_size: int = IMAGE_SIZE,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> IngestionResult:
    """Read a dataset into canonical arrays; bad items are quarantined (or raise, ``on_error="fail"``).

    ``colour``/``size``: ``"convert"`` (to grayscale / to ``image_size`` with area interpolation)
    or ``"reject"`` (quarantine). ``val_fraction``/``test_fraction``/``seed`` draw a stratified
    split for trees without split folders (and val/test missing from a split tree).
    """
    _check_options(kind, on_error, colour, size, image_size, val_fraction, test_fraction)
    root = resolve_path(path)
    if kind == "auto":
        kind = detect_source_kind(root)
    if kind == "csv":
        return ingest_csv(root, on_error, size, int(image_size), progress)
    if not root.is_dir():
        raise IngestionError(f"{root}: source kind {kind!r} needs a folder")

    warnings: list[dict]
    if kind == "fer_folder":
        items, warnings = list_fer_folder(root)
        has_split_folders = True
    else:
        items, warnings, has_split_folders = list_image_folder(root)
    if not items:
        layout = "[<split>/]<class>/*" if kind == "image_folder" else "{train,test}/<class>/*"
        raise IngestionError(f"{root}: no files found (expected {layout})")

    images, kept, hashes, quarantine = decode_items(
        items, on_error, colour, size, int(image_size), workers, progress
    )
    labels = np.array([-1 if it.label is None else it.label for it in items], np.int64)[kept]
    splits = np.array([it.split or "" for it in items], dtype="<U5")[kept]
    source_ids = np.array([it.source_id for it in items], dtype=str)[kept]
    if kind == "image_folder":
        if has_split_folders:
            carve_missing_splits(labels, splits, val_fraction, test_fraction, seed, warnings)
        else:
            splits = assign_missing_splits(labels, splits, val_fraction, test_fraction, seed)
    return IngestionResult(
        images=images[kept],
        labels=labels,
        splits=splits,
        source_ids=source_ids,
        byte_hashes=hashes[kept],
        read=len(items),
        quarantine=quarantine,
        warnings=warnings,
        source_kind=kind,
    )


__all__ = [
    "CONTEMPT_OPTIONS",
    "DATASET_META_KEYS",
    "HARD_LABEL_MODES",
    "LABEL_MODES",
    "DUPLICATE_POLICIES",
    "REASON_CATEGORIES",
    "SOURCE_KINDS",
    "WARNING_CATEGORIES",
    "IngestionError",
    "IngestionResult",
    "apply_duplicate_policy",
    "check_ferplus_settings",
    "check_required_splits",
    "decoder_name",
    "detect_source_kind",
    "extra_label_sets",
    "find_duplicates",
    "ingest",
    "join_ferplus",
    "label_set",
    "leaked_mask",
    "leaked_mask_from_groups",
    "opencv",
    "quality_report",
    "reason_category",
]
