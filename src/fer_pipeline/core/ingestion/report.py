"""The quality report of an ingestion, and the categories its reasons fall into."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from fer_pipeline.core.classes import CLASSES, SPLITS
from fer_pipeline.core.ingestion.ferplus import EXCLUSION_REASONS
from fer_pipeline.core.ingestion.result import IngestionError, IngestionResult

#: Reason categories (the text before the first ':' of every quarantine/warning reason).
REASON_CATEGORIES: tuple[str, ...] = (
    "empty_file",
    "unreadable_file",
    "not_an_image",
    "truncated_image",
    "corrupt_image",
    "unsupported_pixel_format",
    "colour_image",
    "wrong_size",
    "unknown_class",
    "unknown_split",
    "not_in_class_folder",
    "csv_malformed_row",
    "csv_bad_label",
    "csv_label_out_of_range",
    "csv_unknown_usage",
    "csv_non_numeric_pixels",
    "csv_pixel_out_of_range",
    "csv_bad_pixel_count",
    "duplicate_leak",
    "duplicate_conflicting_labels",
    *EXCLUSION_REASONS,
)

#: Warning categories (not rejections: nothing is dropped for these).
WARNING_CATEGORIES: tuple[str, ...] = (
    "ignored_root_file",
    "empty_class_folder",
    "missing_class_folder",
    "missing_split",
    "no_split_prefix",
    "prefix_folder_mismatch",
)


def reason_category(reason: str) -> str:
    """``"wrong_size: 64x64 image ..."`` -> ``"wrong_size"``."""
    return reason.split(":", 1)[0].strip()


def _duplicate_summary(
    result: IngestionResult, duplicates: dict[str, Any], dropped: list[dict], policy: str, max_examples: int
) -> dict[str, Any]:
    examples = []
    for members in duplicates.get("members", [])[:max_examples]:
        examples.append([
            {"item": str(result.source_ids[i]), "split": str(result.splits[i]),
             "label": result.classes[int(result.labels[i])]}
            for i in members
        ])
    return {
        "groups": int(duplicates.get("groups", 0)),
        "byte_identical_groups": int(duplicates.get("byte_identical_groups", 0)),
        "pixel_identical_groups": int(duplicates.get("pixel_identical_groups", 0)),
        "cross_split_groups": int(duplicates.get("cross_split_groups", 0)),
        "train_test_groups": int(duplicates.get("train_test_groups", 0)),
        "conflicting_label_groups": int(duplicates.get("conflicting_label_groups", 0)),
        "files_in_groups": int(duplicates.get("files_in_groups", 0)),
        "byte": {k: int(v) for k, v in duplicates.get("byte", {}).items()},
        "pixel": {k: int(v) for k, v in duplicates.get("pixel", {}).items()},
        "policy": policy,
        "dropped": len(dropped),
        "examples": examples,
    }


def quality_report(
    result: IngestionResult,
    duplicates: dict[str, Any],
    keep_mask: np.ndarray | None = None,
    dropped: list[dict] | None = None,
    policy: str | None = None,
    max_examples: int = 20,
) -> dict[str, Any]:
    """JSON-serialisable summary: counts, quarantine and its reasons, warnings, duplicates.

    Dropped duplicates count as quarantined, so ``read == kept + quarantined``.
    """
    if keep_mask is None:
        keep_mask = np.ones(len(result.labels), bool)
    dropped = list(dropped or [])
    keep_mask = np.asarray(keep_mask, bool)
    if policy is None:
        policy = "drop_leaked" if dropped or not keep_mask.all() else "keep"
    labels = result.labels[keep_mask]
    splits = result.splits[keep_mask]
    counts = {
        split: {name: int(((splits == split) & (labels == c)).sum()) for c, name in enumerate(result.classes)}
        for split in SPLITS
    }
    quarantine = [{"item": str(q["item"]), "reason": str(q["reason"])} for q in [*result.quarantine, *dropped]]
    reasons = Counter(reason_category(q["reason"]) for q in quarantine)
    kept = int(keep_mask.sum())
    return {
        "source_kind": result.source_kind,
        "label_mode": result.label_mode,
        "classes": list(result.classes),
        "read": int(result.read),
        "kept": kept,
        "quarantined": len(quarantine),
        "consistent": int(result.read) == kept + len(quarantine),
        "counts": counts,
        "totals": {split: int(sum(counts[split].values())) for split in SPLITS},
        "quarantine": quarantine,
        "reasons": dict(sorted(reasons.items())),
        "warnings": [{"item": str(w["item"]), "reason": str(w["reason"])} for w in result.warnings],
        "duplicates": _duplicate_summary(result, duplicates, dropped, policy, max_examples),
    }


def check_required_splits(report: dict[str, Any], required: tuple[str, ...] | list[str] = SPLITS,
                          examples: int = 3) -> None:
    """Raise ``IngestionError`` when ``report`` (``quality_report``) keeps no face of a split in
    ``required``: the message gives the counts, every quarantine and warning reason with its count,
    and the first quarantined items, so the cause shows without opening the report. Called
    before anything is written: an ingestion that finds nothing usable must not replace a good
    dataset with an empty one."""
    if isinstance(required, str) or not all(isinstance(split, str) for split in required):
        raise ValueError(f"required_splits must be a list of split names such as [train, val, test], got {required!r}")
    unknown = sorted(set(required) - set(SPLITS))
    if unknown:
        raise ValueError(f"required_splits: unknown split(s) {unknown}; known: {list(SPLITS)}")
    empty = [split for split in required if report["totals"].get(split, 0) == 0]
    if not empty:
        return
    kept = ", ".join(f"{split} {report['totals'].get(split, 0)}" for split in SPLITS)
    reasons = ", ".join(f"{name} {count}" for name, count in report["reasons"].items()) or "none"
    warnings = Counter(reason_category(w["reason"]) for w in report["warnings"])
    lines = [
        f"ingestion kept no face of the {'/'.join(empty)} split{'s' if len(empty) > 1 else ''} "
        f"(read {report['read']}, kept {report['kept']}: {kept}; quarantined {report['quarantined']}). "
        "Nothing was written.",
        f"  quarantine reasons: {reasons}",
    ]
    if warnings:
        lines.append("  warnings: " + ", ".join(f"{name} {count}" for name, count in sorted(warnings.items())))
    for q in report["quarantine"][:examples]:
        lines.append(f"  e.g. {q['item']}: {q['reason']}")
    if report.get("source_kind") == "csv":
        lines.append("  Expected the contest file fer2013.csv: columns emotion (0-6), pixels (2,304 values), "
                     "Usage (Training / PublicTest / PrivateTest).")
    else:
        lines.append("  Expected FER2013's folder layout ({train,test}/<class>/*.jpg with Training_/PublicTest_/"
                     "PrivateTest_ prefixes), fer2013.csv, or an ImageFolder tree ([<split>/]<class>/*) whose "
                     "class folders are named " + ", ".join(CLASSES) + ".")
    raise IngestionError("\n".join(lines))
