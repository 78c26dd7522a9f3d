"""Carrying a model file through a per-file size limit: float16 parts out, checked file back.

A machine that returns its outputs with a size limit per file gets the trained model as a
float16 copy (``core.models.save_model(dtype=torch.float16)``, half the float32 file) cut into
numbered parts (``split_file``). The same run scores that copy beside the float32 model and
records its sha256 in ``metrics.json``, so the returned file is checked, not assumed, to be the
same classifier. ``assemble_model`` joins the parts where they came back, checks the sha256 and
loads the result; a missing, truncated or foreign part is refused and nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_pipeline.core.evaluation.split import evaluate_split
from fer_pipeline.core.models import load_model, save_model
from fer_pipeline.files import atomic_path, file_info

log = logging.getLogger(__name__)

#: File name of the float16 copy; its parts are ``resnet34_fp16.pt.part0``, ``.part1``, ...
RETURNED_MODEL = "resnet34_fp16.pt"


class TransportError(ValueError):
    """Returned parts that cannot be assembled into the recorded model file; says why."""


def split_file(path: str | os.PathLike, max_bytes: int, out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Cut a file into ``<name>.part0``, ``.part1``, … of at most ``max_bytes`` each (in ``out_dir``,
    default beside it); ``join_files`` (or plain ``cat``) puts them back together."""
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    path = Path(path)
    out_dir = Path(out_dir) if out_dir is not None else path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(f"{path.name}.part*"):
        stale.unlink()
    parts = []
    with open(path, "rb") as source:
        while chunk := source.read(max_bytes):
            part = out_dir / f"{path.name}.part{len(parts)}"
            part.write_bytes(chunk)
            parts.append(part)
    return parts


def model_parts(prefix: str | os.PathLike) -> list[Path]:
    """``<prefix>.part0``, ``.part1``, … in numeric order; ValueError when none or one is missing."""
    prefix = Path(prefix)
    numbered = {}
    for part in prefix.parent.glob(f"{prefix.name}.part*"):
        suffix = part.name[len(prefix.name) + len(".part"):]
        if suffix.isdigit():
            numbered[int(suffix)] = part
    if not numbered:
        raise ValueError(f"no parts {prefix}.part0, .part1, … found")
    missing = sorted(set(range(max(numbered) + 1)) - set(numbered))
    if missing:
        raise ValueError(f"{prefix}: part(s) {missing} missing (found {sorted(numbered)})")
    return [numbered[i] for i in sorted(numbered)]


def join_files(parts: Sequence[str | os.PathLike], dest: str | os.PathLike, sha256: str | None = None) -> Path:
    """Concatenate ``parts`` into ``dest`` atomically; with ``sha256``, refuse (ValueError, nothing
    written) when the joined bytes do not match it."""
    digest = hashlib.sha256()
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as target:
            for part in parts:
                data = Path(part).read_bytes()
                digest.update(data)
                target.write(data)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise ValueError(f"joined parts have sha256 {digest.hexdigest()}, expected {sha256}: "
                             f"a part is missing, truncated or from another run")
    return Path(dest)


def export_returned_model(
    model: nn.Module, config: Mapping[str, Any], dataset: Mapping[str, np.ndarray], params: Mapping[str, Any],
    work: Path, out: Path, max_part_bytes: int, float32_logits: Mapping[str, np.ndarray],
) -> dict[str, Any]:
    """Save the float16 copy under ``work``, cut it into parts of at most ``max_part_bytes`` in
    ``out``, and score it on val and test (no TTA) beside the float32 model, whose logits
    (``float32_logits[split]``) the evaluation already computed. Returns the record for
    ``metrics.json``: file (with sha256), parts, their sizes, and per split both accuracies,
    the predictions the rounding changed and the largest logit difference."""
    path = save_model(work / RETURNED_MODEL, model, config, dtype=torch.float16)
    parts = split_file(path, max_part_bytes, out_dir=out)
    half_model, _ = load_model(path)
    comparison: dict[str, Any] = {}
    for split in ("val", "test"):
        half = evaluate_split(half_model, config, dataset, split, "none", params)
        labels = dataset["labels"][half.mask]
        if split not in float32_logits:  # the evaluation scored this split with TTA only, or not at all
            float32_logits = {**float32_logits, split: evaluate_split(model, config, dataset, split, "none",
                                                                      params).logits}
        full_predictions = float32_logits[split].argmax(1)
        comparison[split] = {
            "accuracy_float32": float((full_predictions == labels).mean()),
            "accuracy_float16": half.report["accuracy"],
            "predictions_changed": int((full_predictions != half.logits.argmax(1)).sum()),
            "max_abs_logit_difference": float(np.abs(float32_logits[split] - half.logits).max()),
            "n": int(half.mask.sum()),
        }
    log.info("returned model: %s in %d part(s); test predictions changed by float16: %d of %d", path.name,
             len(parts), comparison["test"]["predictions_changed"], comparison["test"]["n"])
    return {"dtype": "float16", "file": file_info(path), "parts": [p.name for p in parts],
            "part_bytes": [p.stat().st_size for p in parts], "float16_vs_float32": comparison}


def assemble_model(folder: Path, dest: Path) -> str:
    """Join the parts in ``folder`` into ``dest`` after checking them against its metrics.json's
    sha256, and load the result. Returns a one-line description; ``TransportError`` (nothing
    written) when the record or a part is missing or the bytes do not match."""
    metrics_path = folder / "metrics.json"
    if not metrics_path.is_file():
        raise TransportError(f"{metrics_path} not found: give the folder the run's files came back to")
    record = json.loads(metrics_path.read_text(encoding="utf-8")).get("returned_model")
    if not record:
        raise TransportError(f"{metrics_path} has no returned_model: the run stopped before the model was exported")
    try:
        parts = model_parts(folder / RETURNED_MODEL)
        if [p.name for p in parts] != record["parts"]:
            raise ValueError(f"found parts {[p.name for p in parts]}, metrics.json lists {record['parts']}")
        join_files(parts, dest, sha256=record["file"]["sha256"])
        _, config = load_model(dest)
    except ValueError as exc:
        raise TransportError(f"cannot assemble the model: {exc}") from None
    test = record["float16_vs_float32"]["test"]
    return (f"wrote {dest} ({dest.stat().st_size:,} bytes, sha256 checked; {config['arch']}, stem {config['stem']}, "
            f"float16 weights: test accuracy {test['accuracy_float16']:.4f} vs {test['accuracy_float32']:.4f} "
            "in float32)")
