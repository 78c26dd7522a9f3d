"""A dataset for a run without Kedro: any ingestion source, an archive of one (extracted once),
or a canonical ``fer_dataset.npz``; a stratified subset for smoke runs; one split's faces for a
benchmark. The runner, the ablation and the benchmarks load their data through here."""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fer_pipeline.core.classes import SPLITS
from fer_pipeline.core.ingestion import DATASET_META_KEYS, ingest, leaked_mask
from fer_pipeline.core.ingestion.dataset import build_dataset, leaked_flags
from fer_pipeline.core.ingestion.decode import decoder_name
from fer_pipeline.files import atomic_path

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def _archive_stem(path: Path) -> str | None:
    lowered = path.name.lower()
    return next((path.name[: -len(s)] for s in ARCHIVE_SUFFIXES if lowered.endswith(s)), None)


def resolve_data(path: str | os.PathLike, work: Path) -> Path:
    """A dataset path; an archive (.tar.gz/.tgz/.tar/.zip) is extracted once under ``work``."""
    path = Path(path)
    stem = _archive_stem(path) if path.is_file() else None
    if stem is None:
        return path
    target = work / "data" / stem
    marker = work / "data" / f"{stem}.extracted"  # beside, not inside: ingestion reads every file there
    stamp = f"{path.stat().st_size}:{path.stat().st_mtime_ns}"
    if not (marker.is_file() and marker.read_text() == stamp and target.is_dir()):
        marker.unlink(missing_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        start = time.perf_counter()
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                archive.extractall(target)
        else:
            with tarfile.open(path) as archive:
                if hasattr(tarfile, "data_filter"):
                    archive.extractall(target, filter="data")
                else:  # pragma: no cover - Python without extraction filters
                    archive.extractall(target)
        marker.write_text(stamp)
        log.info("extracted %s into %s in %.1f s", path, target, time.perf_counter() - start)
    entries = list(target.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else target


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of a canonical ``.npz`` (``allow_pickle=False``: plain arrays only)."""
    with np.load(path, allow_pickle=False) as stored:
        return {key: stored[key] for key in stored.files}


def load_dataset(
    data: str | os.PathLike, params: Mapping[str, Any], work: Path
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The canonical dataset (``core.ingestion.dataset.build_dataset``, as the ingestion node) and a
    compact quality report.

    ``data``: anything ``core.ingestion.ingest`` reads (FER folder, fer2013.csv, ImageFolder),
    an archive of one, or a canonical ``fer_dataset.npz`` (Kedro's ingestion output; no decode).
    """
    path = Path(data)
    if path.suffix == ".npz" and path.is_file():
        dataset = read_npz(path)
        dataset["leaked"] = leaked_flags(dataset)  # once, for a file written before the flag was stored
        report = {"source_kind": "npz", "source_path": path.as_posix(), "decoder": "none (pre-ingested .npz)",
                  "kept": int(len(dataset["labels"]))}
        return dataset, report
    start = time.perf_counter()
    root = resolve_data(path, work)
    extract_seconds = time.perf_counter() - start
    dataset, full = build_dataset(root, params)
    report = {key: full[key] for key in ("source_kind", "label_mode", "classes", "read", "kept", "quarantined",
                                         "consistent", "counts", "totals", "reasons")}
    report["duplicates"] = {k: v for k, v in full["duplicates"].items() if k != "examples"}
    report["quarantine_examples"] = full["quarantine"][:20]
    report["warnings"] = full["warnings"][:20]
    report["source_path"] = root.as_posix()
    report["decoder"] = decoder_name()
    report["extract_seconds"] = extract_seconds  # 0 unless an archive was extracted (once per machine)
    return dataset, report


def write_npz(path: str | os.PathLike, dataset: Mapping[str, np.ndarray]) -> Path:
    """``dataset``'s arrays as an ``.npz`` that ``load_dataset`` reads back without decoding
    (written to a temporary name and renamed: never half a file)."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **{key: np.asarray(value) for key, value in dataset.items()})
    return Path(path)


def subset_dataset(dataset: Mapping[str, np.ndarray], per_split: int, seed: int = 0) -> dict[str, np.ndarray]:
    """At most ``per_split`` images of each split, stratified by class, every present class kept."""
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(dataset["labels"]), bool)
    for split in SPLITS:
        members = np.flatnonzero(dataset["splits"] == split)
        if len(members) <= per_split:
            keep[members] = True
            continue
        labels = dataset["labels"][members]
        for label in np.unique(labels):
            of_class = members[labels == label]
            take = max(1, int(round(per_split * len(of_class) / len(members))))
            keep[rng.permutation(of_class)[:take]] = True
    subset = {k: (v[keep] if k not in DATASET_META_KEYS else v) for k, v in dataset.items()}
    # a test face whose training copy was left out is no longer a leaked copy in the subset
    subset["leaked"] = leaked_mask(subset["images"], subset["labels"], subset["splits"])
    return subset


def load_split(data: str | os.PathLike, split: str = "train", limit: int | None = None,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 faces and int64 labels of one split of a canonical ``.npz`` or of any source
    ``core.ingestion.ingest`` reads (with its defaults); at most ``limit`` of them, drawn at random
    (the same for the same seed), so every class stays in. What the benchmarks time on."""
    path = Path(data)
    if path.suffix == ".npz" and path.is_file():
        arrays = read_npz(path)
    else:
        arrays = ingest(path, progress=False).as_arrays()
    members = np.flatnonzero(arrays["splits"] == split)
    if len(members) == 0:
        raise ValueError(f"{path}: no {split} faces")
    if limit and limit < len(members):
        members = np.sort(np.random.default_rng(seed).choice(members, limit, replace=False))
    return arrays["images"][members], arrays["labels"][members].astype(np.int64)
