"""The contest file ``fer2013.csv`` (columns ``emotion``, ``pixels``, ``Usage``) -> canonical arrays.

Every non-blank data row is either kept or quarantined with a reason; a file whose header or
quoting cannot be read raises IngestionError.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from fer_pipeline.core.classes import (
    CSV_CLASSES,
    CSV_TO_CANONICAL,
    FER_PREFIX_TO_SPLIT,
    IMAGE_SIZE,
)
from fer_pipeline.core.ingestion.decode import byte_hash, resize_area
from fer_pipeline.core.ingestion.progress import progress_bar
from fer_pipeline.core.ingestion.result import IngestionError, IngestionResult
from fer_pipeline.core.ingestion.sources import CSV_FILE_NAME

CSV_COLUMNS: tuple[str, ...] = ("emotion", "pixels", "usage")

#: Usage column of fer2013.csv -> split (same names as the FER file-name prefixes).
CSV_USAGE_TO_SPLIT: dict[str, str] = {k.lower(): v for k, v in FER_PREFIX_TO_SPLIT.items()}


def _csv_file(root: Path) -> Path:
    if root.is_file():
        return root
    if (root / CSV_FILE_NAME).is_file():
        return root / CSV_FILE_NAME
    csvs = sorted(root.glob("*.csv"))
    if len(csvs) == 1:
        return csvs[0]
    raise IngestionError(f"{root}: no {CSV_FILE_NAME} in this folder (found {len(csvs)} .csv files)")


@dataclass
class _Rows:
    """The kept rows, column by column, and the quarantined ones."""

    images: list[np.ndarray] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    source_ids: list[str] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)

    def keep(self, item: str, face: np.ndarray, emotion: str, pixels: str, usage: str) -> None:
        self.images.append(face)
        self.labels.append(CSV_TO_CANONICAL[int(emotion)])
        self.splits.append(CSV_USAGE_TO_SPLIT[usage.lower()])
        self.source_ids.append(item)
        self.hashes.append(byte_hash(pixels.encode()))

    def result(self, read: int, image_size: int) -> IngestionResult:
        return IngestionResult(
            images=np.stack(self.images) if self.images else np.zeros((0, image_size, image_size), np.uint8),
            labels=np.asarray(self.labels, np.int64),
            splits=np.asarray(self.splits, dtype="<U5"),
            source_ids=np.asarray(self.source_ids, dtype=str),
            byte_hashes=np.asarray(self.hashes, dtype="<U32"),
            read=read,
            quarantine=self.quarantine,
            warnings=[],
            source_kind="csv",
        )


def _read_header(reader: Iterator[list[str]], name: str) -> tuple[dict[str, int], int]:
    """(column -> field index, number of header fields); IngestionError for a missing column."""
    try:
        header = next(reader)
    except StopIteration:
        raise IngestionError(f"{name}: empty file, no header row") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise IngestionError(f"{name}: not a readable CSV ({exc})") from exc
    columns = [c.strip().lower() for c in header]
    missing = [c for c in CSV_COLUMNS if c not in columns]
    if missing:
        raise IngestionError(
            f"{name}: missing column(s) {', '.join(missing)} (found: {', '.join(header) or 'none'}); "
            f"fer2013.csv needs emotion, pixels, Usage"
        )
    return {c: columns.index(c) for c in CSV_COLUMNS}, len(header)


def _data_rows(reader: Iterator[list[str]], name: str) -> Iterator[list[str]]:
    """The data rows, blank lines skipped (they are not data rows)."""
    row_number = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as exc:
            # The reader cannot resync inside a broken quoted field: a whole-file error.
            raise IngestionError(f"{name}:row{row_number + 1}: unreadable CSV ({exc})") from exc
        if not row or all(not cell.strip() for cell in row):
            continue
        row_number += 1
        yield row


def _check_csv_row(emotion: str, pixels: str, usage: str) -> str | None:
    try:
        label = int(emotion)
    except ValueError:
        return f"csv_bad_label: emotion '{emotion[:20]}' is not an integer"
    if not 0 <= label < len(CSV_CLASSES):
        return f"csv_label_out_of_range: emotion {label} is outside 0..{len(CSV_CLASSES) - 1}"
    if usage.lower() not in CSV_USAGE_TO_SPLIT:
        return f"csv_unknown_usage: Usage '{usage[:30]}' is not Training, PublicTest or PrivateTest"
    # Fast path in C: only ASCII digits and spaces (what fer2013.csv holds).
    if not pixels.isascii() or pixels.encode("ascii").translate(None, b"0123456789 ") or not pixels:
        bad = next((t for t in pixels.split() if not (t.isascii() and t.lstrip("-").isdigit())), None)
        if bad is not None or not pixels.strip():
            return f"csv_non_numeric_pixels: pixel value '{(bad or pixels)[:20]}' is not an integer"
        if "-" in pixels:
            return "csv_pixel_out_of_range: pixel values must lie in 0..255 (negative value)"
    return None


def _pixels_face(pixels: str, size: str, image_size: int) -> tuple[np.ndarray | None, str | None]:
    """A checked pixel string -> uint8 (image_size, image_size) face, or (None, reason)."""
    n_pixels = IMAGE_SIZE * IMAGE_SIZE
    values = np.fromstring(pixels, dtype=np.int64, sep=" ")
    if values.size != n_pixels:
        return None, f"csv_bad_pixel_count: {values.size} pixel values, expected {n_pixels} (48x48)"
    if values.min() < 0 or values.max() > 255:
        return None, "csv_pixel_out_of_range: pixel values must lie in 0..255"
    face = values.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)
    if image_size != IMAGE_SIZE:
        if size == "reject":
            return None, f"wrong_size: 48x48 row, expected {image_size}x{image_size} and size='reject'"
        face = resize_area(face, image_size)
    return face, None


def _parse_row(
    row: list[str], at: dict[str, int], n_header: int, size: str, image_size: int
) -> tuple[tuple[str, str, str], np.ndarray | None, str | None]:
    """((emotion, pixels, usage), face, None) for a good row, (fields, None, reason) for a bad one."""
    if len(row) < max(at.values()) + 1:
        return ("", "", ""), None, f"csv_malformed_row: {len(row)} fields, expected {n_header}"
    fields = emotion, pixels, usage = tuple(row[at[c]].strip() for c in CSV_COLUMNS)
    problem = _check_csv_row(emotion, pixels, usage)
    if problem is not None:
        return fields, None, problem
    face, problem = _pixels_face(pixels, size, image_size)
    return fields, face, problem


def ingest_csv(root: Path, on_error: str, size: str, image_size: int, progress: bool) -> IngestionResult:
    """Read ``root`` (a .csv file, or a folder holding fer2013.csv or a single .csv).

    Items are named ``fer2013.csv:row<k>``, k counting the non-blank data rows from 1.
    """
    csv_path = _csv_file(root)
    name = csv_path.name
    try:
        handle = open(csv_path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise IngestionError(f"{csv_path}: cannot open ({exc.strerror or exc})") from exc
    rows = _Rows()
    read = 0
    bar = progress_bar(None, progress, "csv rows")
    with handle:
        reader = csv.reader(handle)
        at, n_header = _read_header(reader, name)
        for row in _data_rows(reader, name):
            read += 1
            item = f"{name}:row{read}"
            fields, face, problem = _parse_row(row, at, n_header, size, image_size)
            if problem is not None:
                if on_error == "fail":
                    raise IngestionError.for_item(item, problem)
                rows.quarantine.append({"item": item, "reason": problem})
            else:
                rows.keep(item, face, *fields)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return rows.result(read, image_size)
