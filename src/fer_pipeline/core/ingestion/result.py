"""What ingestion returns (``IngestionResult``) and the error it raises (``IngestionError``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fer_pipeline.core.classes import CLASSES

#: Keys of the canonical dataset that describe the whole set, not one entry per face.
DATASET_META_KEYS: tuple[str, ...] = ("classes", "label_mode")


class IngestionError(Exception):
    """A source that cannot be read, or (``on_error="fail"``) the first bad item; names it."""

    @classmethod
    def for_item(cls, item: str, reason: str) -> IngestionError:
        """The error for one bad item: ``"<item>: <reason>"``."""
        return cls(f"{item}: {reason}")


@dataclass
class IngestionResult:
    images: np.ndarray  # uint8 (N, S, S)
    labels: np.ndarray  # int64 canonical
    splits: np.ndarray  # unicode, values in SPLITS
    source_ids: np.ndarray  # unicode: path relative to the source root, or "fer2013.csv:row<k>"
    byte_hashes: np.ndarray  # unicode hex digest of the file bytes (CSV: of the pixel string)
    read: int  # items looked at (files + CSV rows)
    quarantine: list[dict] = field(default_factory=list)  # {"item", "reason"} per rejected item
    warnings: list[dict] = field(default_factory=list)  # {"item", "reason"}
    source_kind: str = ""
    classes: tuple[str, ...] = CLASSES  # what labels index (FER+ may add contempt)
    label_mode: str = "fer2013"  # core.ingestion.ferplus.LABEL_MODES
    #: more per-face arrays for the dataset (FER+: ferplus_votes, ferplus_named, fer2013_labels, targets)
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def kept(self) -> int:
        return int(len(self.labels))

    def as_arrays(self) -> dict[str, np.ndarray]:
        """The canonical dataset dict (DESIGN.md) for the ``fer_dataset`` .npz."""
        return {
            "images": self.images,
            "labels": self.labels,
            "splits": self.splits,
            "source_ids": self.source_ids,
            "classes": np.array(self.classes),
            "label_mode": np.array(self.label_mode),
            **self.extras,
        }
