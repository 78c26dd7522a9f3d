"""Source kinds and the folder listers: which files a dataset tree holds, with class and split.

``fer_folder`` is FER2013's ``{train,test}/<class>/*.jpg`` (the file-name prefix gives the
split); ``image_folder`` is any other ``[<split>/]<class>/*`` tree. The listers only walk the
tree: each file becomes an ``Item``, whose ``problem`` is set when the file is rejected for its
place (unknown class or split folder, file outside a class folder) before any byte is read.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from fer_pipeline.core.classes import CLASSES, FER_PREFIX_TO_SPLIT
from fer_pipeline.core.ingestion.result import IngestionError

SOURCE_KINDS: tuple[str, ...] = ("fer_folder", "csv", "image_folder")
CSV_FILE_NAME = "fer2013.csv"

#: Folder names (lower case) that mean a split in an ``image_folder`` tree.
SPLIT_FOLDER_NAMES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}

#: Folder names (lower case) accepted for each canonical class; other datasets spell them so.
CLASS_FOLDER_NAMES: dict[str, int] = {name: index for index, name in enumerate(CLASSES)}
CLASS_FOLDER_NAMES.update(
    {
        "anger": CLASSES.index("angry"),
        "disgusted": CLASSES.index("disgust"),
        "fearful": CLASSES.index("fear"),
        "happiness": CLASSES.index("happy"),
        "sadness": CLASSES.index("sad"),
        "surprised": CLASSES.index("surprise"),
    }
)

#: Extensions of files at a dataset's root that are documentation or metadata, not faces.
_METADATA_SUFFIXES = frozenset({".json", ".md", ".txt", ".yml", ".yaml", ".csv", ".html", ".pdf", ""})


@dataclass
class Item:
    """One listed file: where it is, its split and label from its place in the tree."""

    source_id: str  # posix path relative to the root
    path: str
    split: str | None  # None: to be drawn by the stratified split
    label: int | None
    problem: str | None = None  # a reason known before reading (unknown class folder, ...)


# --------------------------------------------------------------------------- source detection


def resolve_path(path: str | os.PathLike) -> Path:
    """The dataset path made absolute (no symlink resolution); IngestionError if it is missing."""
    # Absolute, so relative ids can be sliced off walked paths.
    resolved = Path(os.path.abspath(Path(path).expanduser()))
    if not resolved.exists():
        raise IngestionError(f"{resolved}: no such file or folder (dataset path does not exist)")
    return resolved


def _subdirs(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as entries:
        return sorted((e for e in entries if e.is_dir()), key=lambda e: e.name)


def _first_file_name(folder: str) -> str | None:
    for dirpath, _dirnames, filenames in os.walk(folder):
        for name in sorted(filenames):
            if not name.startswith("."):
                return name
    return None


def _has_fer_prefix(name: str) -> bool:
    return name.split("_", 1)[0] in FER_PREFIX_TO_SPLIT and "_" in name


def _looks_like_fer_folder(root: Path) -> bool:
    """train/ and/or test/ holding class folders whose files carry FER's split prefixes."""
    split_dirs = [d for d in _subdirs(root) if d.name.lower() in ("train", "test")]
    if not split_dirs:
        return False
    for split_dir in split_dirs:
        for class_dir in _subdirs(Path(split_dir.path)):
            if class_dir.name.lower() not in CLASS_FOLDER_NAMES:
                continue
            name = _first_file_name(class_dir.path)
            if name is not None:
                return _has_fer_prefix(name)
    return False


def detect_source_kind(path: str | os.PathLike) -> str:
    """``"csv"``, ``"fer_folder"`` or ``"image_folder"`` for a dataset path; IngestionError if none."""
    root = resolve_path(path)
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "csv"
        raise IngestionError(f"{root}: a file that is not a .csv; give a .csv file or a dataset folder")
    if (root / CSV_FILE_NAME).is_file():
        return "csv"
    if _looks_like_fer_folder(root):
        return "fer_folder"
    return "image_folder"


# --------------------------------------------------------------------------- listing files


def _class_index(folder_name: str) -> int | None:
    return CLASS_FOLDER_NAMES.get(folder_name.strip().lower())


def _walk_files(folder: str, root: Path) -> Iterator[tuple[str, str]]:
    """(absolute path, posix path relative to root) of every file below ``folder``, sorted."""
    root_prefix_len = len(os.path.join(str(root), ""))
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        rel_dir = dirpath[root_prefix_len:]
        if os.sep != "/":
            rel_dir = rel_dir.replace(os.sep, "/")
        for name in sorted(filenames):
            yield os.path.join(dirpath, name), f"{rel_dir}/{name}" if rel_dir else name


def _rel(path: str, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _list_class_folders(
    root: Path, parent: Path, split: str | None, items: list[Item], warnings: list[dict]
) -> None:
    """Items of ``parent/<class>/**``; files directly in ``parent`` are not in a class folder."""
    seen_classes: set[int] = set()
    with os.scandir(parent) as entries:
        entries = sorted(entries, key=lambda e: e.name)
    for entry in entries:
        if entry.is_file() and parent == root:
            _root_file(entry, root, items, warnings)
            continue
        if entry.is_file():
            items.append(
                Item(_rel(entry.path, root), entry.path, split, None,
                     f"not_in_class_folder: file lies in '{_rel(str(parent), root)}', not in a class folder")
            )
            continue
        if not entry.is_dir():
            continue
        label = _class_index(entry.name)
        files = list(_walk_files(entry.path, root))
        folder_id = _rel(entry.path, root)
        if not files:
            warnings.append({"item": folder_id, "reason": "empty_class_folder: folder has no files"})
        if label is None:
            problem = (f"unknown_class: folder '{entry.name}' is not a class "
                       f"(expected one of {', '.join(CLASSES)})")
            items.extend(Item(rel, f, split, None, problem) for f, rel in files)
            continue
        seen_classes.add(label)
        items.extend(Item(rel, f, split, label) for f, rel in files)
    missing = [CLASSES[i] for i in range(len(CLASSES)) if i not in seen_classes]
    if missing:
        where = _rel(str(parent), root)
        warnings.append({"item": where, "reason": f"missing_class_folder: no folder for {', '.join(missing)}"})


def _root_file(entry: os.DirEntry, root: Path, items: list[Item], warnings: list[dict]) -> None:
    """A file beside the split folders: metadata (README, demo_spec.json) is listed as ignored;
    anything else might be a face and is quarantined, so it cannot vanish silently."""
    if Path(entry.name).suffix.lower() in _METADATA_SUFFIXES and not entry.name.startswith("."):
        warnings.append({"item": entry.name, "reason": "ignored_root_file: documentation or metadata beside "
                         "the split folders, not read as a face"})
    else:
        items.append(Item(_rel(entry.path, root), entry.path, None, None,
                          "not_in_class_folder: file lies at the dataset root"))


def _apply_fer_prefixes(items: list[Item], warnings: list[dict]) -> None:
    """Set each item's split from its file-name prefix (test/ = PublicTest + PrivateTest)."""
    unprefixed: Counter[str] = Counter()
    disagreeing: Counter[str] = Counter()
    for item in items:
        if item.problem is not None:
            continue
        prefix = os.path.basename(item.path).split("_", 1)[0]
        prefix_split = FER_PREFIX_TO_SPLIT.get(prefix)
        top = item.source_id.split("/", 1)[0]
        if prefix_split is None:
            unprefixed[top] += 1  # keep the folder's split
        else:
            if (item.split == "train") != (prefix_split == "train"):
                disagreeing[top] += 1
            item.split = prefix_split
    for top, n in sorted(unprefixed.items()):
        warnings.append({"item": top, "reason": f"no_split_prefix: {n} files without a Training_/PublicTest_/"
                         f"PrivateTest_ prefix; split taken from the folder name"})
    for top, n in sorted(disagreeing.items()):
        warnings.append({"item": top, "reason": f"prefix_folder_mismatch: {n} files whose prefix names another "
                         f"split than their folder; the prefix wins"})


def _list_split_folders(root: Path, items: list[Item], warnings: list[dict], not_a_split: str) -> None:
    """Items of ``root/<split>/<class>/**``; files of any other top-level folder are quarantined
    as ``unknown_split`` (``not_a_split`` completes the reason), root files as ``_root_file`` says."""
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_file():
            _root_file(entry, root, items, warnings)
        elif entry.is_dir():
            split = SPLIT_FOLDER_NAMES.get(entry.name.lower())
            if split is None:
                problem = f"unknown_split: folder '{entry.name}' {not_a_split}"
                items.extend(Item(rel, f, None, None, problem) for f, rel in _walk_files(entry.path, root))
                continue
            _list_class_folders(root, Path(entry.path), split, items, warnings)


def list_fer_folder(root: Path) -> tuple[list[Item], list[dict]]:
    """Items and warnings of a ``fer_folder`` tree; the file-name prefix gives each split."""
    items: list[Item] = []
    warnings: list[dict] = []
    _list_split_folders(root, items, warnings, "is not train/ or test/")
    _apply_fer_prefixes(items, warnings)
    return items, warnings


def list_image_folder(root: Path) -> tuple[list[Item], list[dict], bool]:
    """Items and warnings of an ``image_folder`` tree; the bool says whether it has split folders."""
    items: list[Item] = []
    warnings: list[dict] = []
    top_dirs = _subdirs(root)
    has_splits = any(d.name.lower() in SPLIT_FOLDER_NAMES for d in top_dirs)
    if not has_splits:
        _list_class_folders(root, root, None, items, warnings)
        return items, warnings, False
    _list_split_folders(root, items, warnings, f"is not a split folder ({', '.join(sorted(SPLIT_FOLDER_NAMES))}) "
                        "next to the split folders")
    return items, warnings, True
