"""FER+ labels (Microsoft FERPlus ``fer2013new.csv``) joined onto the contest CSV, and its label rules.

FER+ re-annotated every FER2013 face with 10 crowd votes over 8 emotions plus ``unknown`` and
``NF`` (not a face). The file has one row per ``fer2013.csv`` row, **in the same order** and with
the same ``Usage``; that order is the only join key (its ``Image name`` column names images FER+
extracted, not the CSV's rows), so only the contest-CSV source can take it.

Label modes (``LABEL_MODES``), each a function of one face's votes:

* ``fer2013``            the contest label; the votes are kept beside it for dual evaluation.
* ``ferplus_majority``   FER+'s own rule (Barsoum et al. 2016, ``_process_data`` in FERPlus's
                         ``src/ferplus.py``): votes of 1 are dropped as outliers; the label needs
                         more than half of the remaining votes (unknown and NF count in that
                         total); a winning unknown or NF (or contempt, unless it is a class)
                         excludes the face, as does no majority.
* ``ferplus_plurality``  the most voted emotion (all votes); a tie for the top excludes the face,
                         and so does a winning unknown / NF / contempt as above.
* ``ferplus_probability`` this project's soft-target rule (not FERPlus's "probability" processing,
                         which keeps at most the top 3 emotions): votes of 1 dropped, then
                         unknown / NF (and contempt unless it is a class) left out and the rest
                         normalised. Excluded when what is left is not more than half of the
                         remaining votes (the reason names what most of the rest says), or when
                         the top class is tied: evaluation and model selection need one label per
                         face, and the hard label (sampler, validation, test) is the top class.

An excluded face is quarantined with a reason (``ferplus_*``, see ``EXCLUSION_REASONS``), so the
quality report's ``read == kept + quarantined`` still holds. The 173 rows with an empty
``Image name`` (FER+ judged them not a face) are ``ferplus_not_face`` in every FER+ mode.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fer_pipeline.core.classes import CLASSES, CONTEMPT, SPLIT_TO_FER_NAME
from fer_pipeline.core.ingestion.result import IngestionError, IngestionResult

LABEL_MODES: tuple[str, ...] = ("fer2013", "ferplus_majority", "ferplus_plurality", "ferplus_probability")
#: The label modes that give one class per face (what evaluation can score against).
HARD_LABEL_MODES: tuple[str, ...] = ("fer2013", "ferplus_majority", "ferplus_plurality")
CONTEMPT_OPTIONS: tuple[str, ...] = ("exclude", "class")

#: The vote columns of fer2013new.csv, in the file's order.
VOTE_COLUMNS: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "nf",
)
#: FER+ emotion -> our class name (contempt stays contempt: a class only with contempt="class").
FERPLUS_TO_CLASS: dict[str, str] = {
    "neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad", "anger": "angry",
    "disgust": "disgust", "fear": "fear", "contempt": CONTEMPT,
}
_UNKNOWN, _NOT_FACE = VOTE_COLUMNS.index("unknown"), VOTE_COLUMNS.index("nf")
_CONTEMPT = VOTE_COLUMNS.index("contempt")

#: Quarantine reason categories of excluded faces.
EXCLUSION_REASONS: tuple[str, ...] = (
    "ferplus_not_face", "ferplus_unknown", "ferplus_contempt", "ferplus_no_majority", "ferplus_tie",
    "ferplus_no_votes",
)


def dataset_classes(contempt: str) -> tuple[str, ...]:
    """The classes a FER+ dataset has: the 7 FER2013 ones, plus contempt as the eighth with ``"class"``."""
    return (*CLASSES, CONTEMPT) if contempt == "class" else CLASSES


def check_settings(mode: str, contempt: str, votes_path: str | Path | None, source_kind: str | None) -> None:
    """Refuse label settings that cannot work, before any image is decoded: an unknown mode or
    contempt option, a FER+ mode or contempt class without a votes file, contempt as a class
    with the contest labels, a missing votes file, and a source other than the contest CSV
    (``source_kind``: the detected or configured kind; None when not known yet)."""
    if mode not in LABEL_MODES:
        raise ValueError(f"ingestion.label_mode must be one of {', '.join(LABEL_MODES)}, got {mode!r}")
    if contempt not in CONTEMPT_OPTIONS:
        raise ValueError(f"ingestion.ferplus_contempt must be one of {', '.join(CONTEMPT_OPTIONS)}, got {contempt!r}")
    if not votes_path:
        if mode != "fer2013" or contempt != "exclude":
            raise ValueError(f"ingestion.label_mode {mode} (ferplus_contempt {contempt}) needs the FER+ votes: set "
                             "ingestion.ferplus_votes_path to fer2013new.csv (and source_path to fer2013.csv)")
        return
    if contempt == "class" and mode == "fer2013":
        raise ValueError("ingestion.ferplus_contempt: class needs a FER+ label mode (FER2013 never labels "
                         "contempt); use label_mode ferplus_majority, ferplus_plurality or ferplus_probability")
    if source_kind is not None and source_kind != "csv":
        raise IngestionError(
            f"FER+ labels need the contest CSV source: fer2013new.csv is joined to fer2013.csv by row order, and a "
            f"{source_kind} source has no row order. Point ingestion.source_path at fer2013.csv (with "
            "source_kind csv or auto) and ingestion.ferplus_votes_path at fer2013new.csv")
    if not Path(votes_path).is_file():
        raise IngestionError(f"{votes_path}: no FER+ votes file there (ingestion.ferplus_votes_path). It is "
                             "fer2013new.csv from https://github.com/microsoft/FERPlus (data/ folder).")


@dataclass
class FerPlusVotes:
    """The votes file, row k = the contest CSV's data row k (blank lines skipped by both)."""

    votes: np.ndarray  # int16 (rows, 10), VOTE_COLUMNS order
    usages: list[str]
    image_names: list[str]
    path: str

    @property
    def named(self) -> np.ndarray:
        """False for the rows FER+ left without an image name (not a face)."""
        return np.array([bool(name.strip()) for name in self.image_names], dtype=bool)


def read_votes(path: str | Path) -> FerPlusVotes:
    """Read ``fer2013new.csv``; IngestionError naming the file (and row) when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise IngestionError(f"{path}: no FER+ votes file there (ingestion.ferplus_votes_path). It is "
                             "fer2013new.csv from https://github.com/microsoft/FERPlus (data/ folder).")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise IngestionError(f"{path}: empty file, expected the FER+ header")
    header = [c.strip().lower() for c in rows[0]]
    wanted = ("usage", "image name", *VOTE_COLUMNS)
    missing = [c for c in wanted if c not in header]
    if missing:
        raise IngestionError(f"{path}: not a FER+ votes file: missing column(s) {', '.join(missing)} "
                             f"(expected Usage, Image name, {', '.join(VOTE_COLUMNS)})")
    at = [header.index(c) for c in wanted]
    votes = np.zeros((len(rows) - 1, len(VOTE_COLUMNS)), np.int16)
    usages, names = [], []
    for k, row in enumerate(rows[1:]):
        if len(row) < len(header):
            raise IngestionError(f"{path.name}:row{k + 1}: {len(row)} fields, expected {len(header)}")
        usages.append(row[at[0]].strip())
        names.append(row[at[1]].strip())
        cells = [row[i].strip() for i in at[2:]]
        if not all(cell.isdigit() for cell in cells):  # counts: non-negative integers, nothing else
            raise IngestionError(f"{path.name}:row{k + 1}: a vote count is not a non-negative integer: {cells}")
        values = [int(cell) for cell in cells]
        votes[k] = values
    return FerPlusVotes(votes, usages, names, path.as_posix())


def check_alignment(votes: FerPlusVotes, csv_name: str, read: int, kept_rows: np.ndarray,
                    kept_usages: list[str]) -> None:
    """The votes file must have one row per CSV data row (``read``), and the same ``Usage`` on
    every kept row (``kept_rows``: their 1-based row numbers); otherwise it is another file or
    another order, and the labels would land on the wrong faces: IngestionError naming the first
    row that differs (a row only one of the files has, when they agree up to the shorter's end)."""
    name = Path(votes.path).name
    for row, usage in zip(kept_rows.tolist(), kept_usages):
        if row > len(votes.usages):
            break
        ferplus_usage = votes.usages[row - 1]
        if ferplus_usage.lower() != usage.lower():
            raise IngestionError(
                f"{name}:row{row} has Usage '{ferplus_usage}' but {csv_name}:row{row} has '{usage}': the files "
                f"are not in the same row order (FER+ rows follow {csv_name}'s)")
    if len(votes.usages) != read:
        shorter, longer = (name, csv_name) if len(votes.usages) < read else (csv_name, name)
        first = min(len(votes.usages), read) + 1
        raise IngestionError(
            f"{name} has {len(votes.usages)} data rows but {csv_name} has {read}: {longer}:row{first} has no "
            f"counterpart in {shorter}. FER+ labels are joined by row order, so both must be the complete files "
            "(35,887 data rows each)")


def vote_matrix(votes: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    """(N, 10) FER+ votes -> (N, len(classes)) votes per class of ours (unknown, NF dropped;
    contempt dropped unless it is a class)."""
    out = np.zeros((len(votes), len(classes)), np.float64)
    for column, emotion in enumerate(VOTE_COLUMNS[:8]):
        name = FERPLUS_TO_CLASS[emotion]
        if name in classes:
            out[:, classes.index(name)] = votes[:, column]
    return out


def _winner_reason(column: int) -> str | None:
    if column == _UNKNOWN:
        return "ferplus_unknown: most votes say the emotion is unknown"
    if column == _NOT_FACE:
        return "ferplus_not_face: most votes say this is not a face"
    return None


def ferplus_labels(
    votes: np.ndarray, named: np.ndarray, mode: str, classes: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray | None, list[str | None]]:
    """(labels, soft targets or None, exclusion reason per face) under ``mode`` (a FER+ mode).

    ``labels``: int64 index into ``classes``, -1 where excluded; ``targets``: (N, K) float32 vote
    distributions for ``ferplus_probability``, else None. A reason is None for a kept face.
    """
    if mode not in LABEL_MODES[1:]:
        raise ValueError(f"not a FER+ label mode: {mode!r} (use one of {LABEL_MODES[1:]})")
    votes = np.asarray(votes, np.float64)
    n = len(votes)
    labels = np.full(n, -1, np.int64)
    reasons: list[str | None] = [None] * n
    targets = np.zeros((n, len(classes)), np.float32) if mode == "ferplus_probability" else None
    # Votes of 1 are outliers in FER+'s own processing (majority and probability modes).
    cleaned = votes if mode == "ferplus_plurality" else np.where(votes <= 1, 0.0, votes)
    per_class = vote_matrix(cleaned, classes)
    for i in range(n):
        if not named[i]:
            reasons[i] = "ferplus_not_face: FER+ gives this row no image name (not a face)"
            continue
        row, total = cleaned[i], cleaned[i].sum()
        if total <= 0:
            reasons[i] = f"ferplus_no_votes: no votes left ({_describe(votes[i])})"
            continue
        if mode == "ferplus_probability":
            kept = per_class[i].sum()
            if kept <= 0.5 * total:
                reasons[i] = _left_out_reason(row, classes, f"only {kept:g} of {total:g} votes name one of the "
                                              f"classes ({_describe(votes[i])})")
                continue
            top_classes = np.flatnonzero(per_class[i] == per_class[i].max())
            if len(top_classes) > 1:
                reasons[i] = (f"ferplus_tie: {' / '.join(classes[c] for c in top_classes)} tie, no one label to "
                              f"select or score with ({_describe(votes[i])})")
                continue
            targets[i] = per_class[i] / kept
            labels[i] = int(top_classes[0])
            continue
        top = row.max()
        winners = np.flatnonzero(row == top)
        if mode == "ferplus_majority" and top <= 0.5 * total:
            reasons[i] = f"ferplus_no_majority: top emotion has {top:g} of {total:g} votes ({_describe(votes[i])})"
            continue
        if len(winners) > 1:
            reasons[i] = f"ferplus_tie: {' / '.join(VOTE_COLUMNS[w] for w in winners)} tie ({_describe(votes[i])})"
            continue
        column = int(winners[0])
        reasons[i] = _winner_reason(column)
        if reasons[i] is not None:
            continue
        name = FERPLUS_TO_CLASS[VOTE_COLUMNS[column]]
        if name not in classes:
            reasons[i] = "ferplus_contempt: the label is contempt, not a class (ingestion.ferplus_contempt: exclude)"
            continue
        labels[i] = classes.index(name)
    return labels, targets, reasons


def _left_out_reason(votes: np.ndarray, classes: tuple[str, ...], detail: str) -> str:
    """The reason of a face whose votes mostly name no class: after what most of them name instead."""
    left_out = {"ferplus_unknown": votes[_UNKNOWN], "ferplus_not_face": votes[_NOT_FACE],
                "ferplus_contempt": 0.0 if CONTEMPT in classes else votes[_CONTEMPT]}
    return f"{max(left_out, key=left_out.get)}: {detail}"


def _describe(votes: np.ndarray) -> str:
    return ", ".join(f"{name} {int(v)}" for name, v in zip(VOTE_COLUMNS, votes) if v > 0) or "no votes"


def _csv_row_numbers(source_ids: np.ndarray) -> np.ndarray:
    """``fer2013.csv:row<k>`` -> k."""
    return np.array([int(str(s).rsplit(":row", 1)[1]) for s in source_ids], dtype=np.int64)


def join_ferplus(result: IngestionResult, votes_path: str | Path, mode: str, contempt: str = "exclude"
                 ) -> IngestionResult:
    """The contest CSV's ``result`` relabelled by the FER+ votes in ``votes_path`` under ``mode``.

    Every mode keeps the votes (``ferplus_votes``, ``ferplus_named``) and the contest labels
    (``fer2013_labels``) beside the labels, so evaluation can score against either label set;
    ``ferplus_probability`` adds ``targets``. Faces a FER+ rule excludes move to the quarantine
    with their reason. IngestionError for a source that is not the contest CSV, or a votes file
    that does not line up with it."""
    check_settings(mode, contempt, votes_path, result.source_kind)
    classes = dataset_classes(contempt)
    votes = read_votes(votes_path)
    rows = _csv_row_numbers(result.source_ids)
    csv_name = str(result.source_ids[0]).rsplit(":row", 1)[0] if len(result.source_ids) else "the contest CSV"
    check_alignment(votes, csv_name, result.read, rows, [SPLIT_TO_FER_NAME[str(s)] for s in result.splits])
    face_votes, named = votes.votes[rows - 1], votes.named[rows - 1]
    extras = {"ferplus_votes": face_votes, "ferplus_named": named, "fer2013_labels": result.labels.copy()}
    if mode == "fer2013":
        return replace(result, label_mode=mode, extras=extras)
    labels, targets, reasons = ferplus_labels(face_votes, named, mode, classes)
    keep = labels >= 0
    if targets is not None:
        extras["targets"] = targets
    excluded = [{"item": str(result.source_ids[i]), "reason": reasons[i]} for i in np.flatnonzero(~keep)]
    return replace(
        result, images=result.images[keep], labels=labels[keep], splits=result.splits[keep],
        source_ids=result.source_ids[keep], byte_hashes=result.byte_hashes[keep],
        quarantine=[*result.quarantine, *excluded], classes=classes, label_mode=mode,
        extras={key: value[keep] for key, value in extras.items()},
    )


def label_set(dataset: dict[str, np.ndarray], name: str, classes: tuple[str, ...] | list[str]) -> np.ndarray:
    """The dataset's faces labelled by the label set ``name`` (a ``HARD_LABEL_MODES`` entry), as
    indices into ``classes``, -1 where that set gives no label (a FER+ exclusion). ValueError when
    the dataset does not carry what the set needs (FER+ votes are stored when ingestion joined them)."""
    if name not in HARD_LABEL_MODES:
        raise ValueError(f"unknown label set {name!r}: use one of {', '.join(HARD_LABEL_MODES)}")
    own_mode = str(dataset.get("label_mode", "fer2013"))
    if name == own_mode:
        return np.asarray(dataset["labels"], np.int64)
    if name == "fer2013" and "fer2013_labels" in dataset:
        return np.asarray(dataset["fer2013_labels"], np.int64)
    if "ferplus_votes" not in dataset:
        raise ValueError(f"label set {name} needs the FER+ votes, and this dataset (label mode {own_mode}) has none: "
                         "ingest fer2013.csv with ingestion.ferplus_votes_path set to fer2013new.csv")
    labels, _, _ = ferplus_labels(dataset["ferplus_votes"], dataset["ferplus_named"], name, tuple(classes))
    return labels


def extra_label_sets(dataset: dict[str, np.ndarray], requested: str | list[str] | None) -> list[str]:
    """The label sets to score against besides the dataset's own: ``"auto"`` = every hard set the
    dataset can give (fer2013 and ferplus_majority when it carries FER+ votes), minus its own."""
    own_mode = str(dataset.get("label_mode", "fer2013"))
    if requested in (None, "auto"):
        if "ferplus_votes" not in dataset:
            return []
        return [name for name in ("fer2013", "ferplus_majority") if name != own_mode]
    if isinstance(requested, str) or not all(isinstance(n, str) for n in requested):
        raise ValueError(f"evaluate.label_sets must be auto or a list such as [ferplus_majority], got {requested!r}")
    unknown = [n for n in requested if n not in HARD_LABEL_MODES]
    if unknown:
        raise ValueError(f"evaluate.label_sets: unknown label set(s) {unknown}; known: {', '.join(HARD_LABEL_MODES)}")
    return [name for name in requested if name != own_mode]
