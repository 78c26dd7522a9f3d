"""Writing files atomically (``atomic_path``: the one implementation, which the project's writers
of records, models, data sets and figures go through), JSON-safe values, JSON and CSV records,
figures, file digests."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
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


def temporary_path_beside(path: str | os.PathLike, suffix: str = ".tmp") -> Path:
    """A new hidden name in ``path``'s folder (``.<name>.<random><suffix>``): a file to write
    before it is renamed over ``path``, in the same file system so that the rename is atomic, and
    unique so that two writers of the same file never write into each other's."""
    path = Path(path)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path (``temporary_path_beside``) to write ``path``'s new content to: renamed
    over ``path`` when the block ends, deleted when it raises (an exception, Ctrl-C). ``path`` is
    never half written; a process killed outright while writing leaves its hidden temporary file.
    Its folder is made if missing. ``suffix`` is for writers that go by the extension
    (``np.savez`` adds ``.npz`` to any other name, matplotlib picks the format by it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path_beside(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """``data`` into ``path``, atomically (``atomic_path``)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def save_figure(figure: Any, path: str | os.PathLike, **savefig_args: Any) -> Path:
    """A matplotlib ``figure`` into ``path`` (its format from the extension), atomically."""
    with atomic_path(path, suffix=Path(path).suffix) as tmp:
        figure.savefig(tmp, **savefig_args)
    return Path(path)


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """``payload`` as indented JSON, atomically (``atomic_path``)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(json_safe(payload), indent=2) + "\n", encoding="utf-8")


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows as CSV, atomically (``atomic_path``); the columns are every key in order of first
    appearance."""
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
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
