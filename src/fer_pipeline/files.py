"""Writing a run's records: JSON-safe values, atomic JSON, CSV tables, file digests."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """NumPy scalars/arrays to Python, NaN/inf to None, paths, devices and dtypes to strings."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)  # Path, torch.device, torch.dtype, ...


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """``payload`` as indented JSON, written to a temporary file and renamed (never half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(json_safe(payload), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows as CSV; the columns are every key in order of first appearance."""
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(json_safe(list(rows)))


def read_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """``write_csv``'s rows back, numbers as floats, empty cells left out."""
    def number(text: str) -> Any:
        try:
            return float(text)
        except ValueError:
            return text

    with open(path, newline="", encoding="utf-8") as handle:
        return [{k: number(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]


def file_info(path: str | os.PathLike) -> dict[str, Any]:
    """``{"path", "bytes", "sha256"}`` of a file."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return {"path": path.as_posix(), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}
