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
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from fer_pipeline.core.classes import (
    CLASSES,
    CSV_CLASSES,
    CSV_TO_CANONICAL,
    FER_PREFIX_TO_SPLIT,
    IMAGE_SIZE,
    SPLITS,
)

SOURCE_KINDS: tuple[str, ...] = ("fer_folder", "csv", "image_folder")
CSV_FILE_NAME = "fer2013.csv"
CSV_COLUMNS: tuple[str, ...] = ("emotion", "pixels", "usage")
DUPLICATE_POLICIES: tuple[str, ...] = ("keep", "drop_leaked")

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

#: Usage column of fer2013.csv -> split (same names as the FER file-name prefixes).
CSV_USAGE_TO_SPLIT: dict[str, str] = {k.lower(): v for k, v in FER_PREFIX_TO_SPLIT.items()}

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

# Items per thread-pool task: one future per file costs more than decoding a 48x48 JPEG.
_CHUNK = 256


class IngestionError(Exception):
    """A source that cannot be read, or (``on_error="fail"``) the first bad item; names it."""


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
            "classes": np.array(CLASSES),
        }


def reason_category(reason: str) -> str:
    """``"wrong_size: 64x64 image ..."`` -> ``"wrong_size"``."""
    return reason.split(":", 1)[0].strip()


# --------------------------------------------------------------------------- source detection


def _resolve(path: str | os.PathLike) -> Path:
    # Absolute, so relative ids can be sliced off walked paths (no symlink resolution).
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
    root = _resolve(path)
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "csv"
        raise IngestionError(f"{root}: a file that is not a .csv; give a .csv file or a dataset folder")
    if (root / CSV_FILE_NAME).is_file():
        return "csv"
    if _looks_like_fer_folder(root):
        return "fer_folder"
    return "image_folder"


def _csv_file(root: Path) -> Path:
    if root.is_file():
        return root
    if (root / CSV_FILE_NAME).is_file():
        return root / CSV_FILE_NAME
    csvs = sorted(root.glob("*.csv"))
    if len(csvs) == 1:
        return csvs[0]
    raise IngestionError(f"{root}: no {CSV_FILE_NAME} in this folder (found {len(csvs)} .csv files)")


# --------------------------------------------------------------------------- listing files


@dataclass
class _Item:
    source_id: str  # posix path relative to the root
    path: str
    split: str | None  # None: to be drawn by the stratified split
    label: int | None
    problem: str | None = None  # a reason known before reading (unknown class folder, ...)


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
    root: Path, parent: Path, split: str | None, items: list[_Item], warnings: list[dict]
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
                _Item(_rel(entry.path, root), entry.path, split, None,
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
            items.extend(_Item(rel, f, split, None, problem) for f, rel in files)
            continue
        seen_classes.add(label)
        items.extend(_Item(rel, f, split, label) for f, rel in files)
    missing = [CLASSES[i] for i in range(len(CLASSES)) if i not in seen_classes]
    if missing:
        where = _rel(str(parent), root)
        warnings.append({"item": where, "reason": f"missing_class_folder: no folder for {', '.join(missing)}"})


#: Extensions of files at a dataset's root that are documentation or metadata, not faces.
_METADATA_SUFFIXES = frozenset({".json", ".md", ".txt", ".yml", ".yaml", ".csv", ".html", ".pdf", ""})


def _root_file(entry: os.DirEntry, root: Path, items: list[_Item], warnings: list[dict]) -> None:
    """A file beside the split folders: metadata (README, demo_spec.json) is listed as ignored;
    anything else might be a face and is quarantined, so it cannot vanish silently."""
    if Path(entry.name).suffix.lower() in _METADATA_SUFFIXES and not entry.name.startswith("."):
        warnings.append({"item": entry.name, "reason": "ignored_root_file: documentation or metadata beside "
                         "the split folders, not read as a face"})
    else:
        items.append(_Item(_rel(entry.path, root), entry.path, None, None,
                           "not_in_class_folder: file lies at the dataset root"))


def _list_fer_folder(root: Path) -> tuple[list[_Item], list[dict]]:
    items: list[_Item] = []
    warnings: list[dict] = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_file():
            _root_file(entry, root, items, warnings)
        elif entry.is_dir():
            folder_split = SPLIT_FOLDER_NAMES.get(entry.name.lower())
            if folder_split is None:
                problem = f"unknown_split: folder '{entry.name}' is not train/ or test/"
                items.extend(_Item(rel, f, None, None, problem) for f, rel in _walk_files(entry.path, root))
                continue
            _list_class_folders(root, Path(entry.path), folder_split, items, warnings)
    # The file-name prefix keeps the contest split (test/ = PublicTest + PrivateTest).
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
    return items, warnings


def _list_image_folder(root: Path) -> tuple[list[_Item], list[dict], bool]:
    """Items and warnings; the bool says whether the tree has split folders."""
    items: list[_Item] = []
    warnings: list[dict] = []
    top_dirs = _subdirs(root)
    has_splits = any(d.name.lower() in SPLIT_FOLDER_NAMES for d in top_dirs)
    if not has_splits:
        _list_class_folders(root, root, None, items, warnings)
        return items, warnings, False
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_file():
            _root_file(entry, root, items, warnings)
        elif entry.is_dir():
            split = SPLIT_FOLDER_NAMES.get(entry.name.lower())
            if split is None:
                problem = (f"unknown_split: folder '{entry.name}' is not a split folder "
                           f"({', '.join(sorted(SPLIT_FOLDER_NAMES))}) next to the split folders")
                items.extend(_Item(rel, f, None, None, problem) for f, rel in _walk_files(entry.path, root))
                continue
            _list_class_folders(root, Path(entry.path), split, items, warnings)
    return items, warnings, True


# --------------------------------------------------------------------------- decoding


def _sniff(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data[:1] == b"P" and data[1:2] in b"123456" and len(data) > 2:
        return "pnm"
    return None


def _truncation(data: bytes, fmt: str | None) -> str | None:
    """Why the bytes look cut short, checked before decoding (decoders may fill in grey)."""
    if fmt == "jpeg":
        # The last scan (SOS, FFDA) must be followed by the end-of-image marker (FFD9); entropy
        # coded data never contains FFD9 (FF is stuffed), an EXIF thumbnail precedes the scan.
        if data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
            return "truncated_image: JPEG data ends before its end-of-image marker"
    elif fmt == "png" and data.rfind(b"IEND", 8) < 0:
        return "truncated_image: PNG data ends before its IEND chunk"
    return None


def _decode_pil(data: bytes, fmt: str | None) -> tuple[np.ndarray | None, str | None]:
    """Fallback for what OpenCV cannot read (GIF, odd modes). Returns (pixels, problem)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
                return np.asarray(image.convert("L")), None
            rgb = np.asarray(image.convert("RGB"))
            return rgb[..., ::-1], None  # BGR, as OpenCV gives
    except UnidentifiedImageError:
        if fmt is None:
            return None, "not_an_image: content is not a recognised image format"
        return None, f"corrupt_image: {fmt.upper()} data could not be decoded"
    except Exception as exc:  # decoders raise OSError, ValueError, SyntaxError, ...
        message = str(exc) or type(exc).__name__
        if "truncated" in message.lower():
            return None, f"truncated_image: {message}"
        if fmt is None:
            return None, "not_an_image: content is not a recognised image format"
        return None, f"corrupt_image: {fmt.upper()} data could not be decoded ({message})"


def _to_uint8(pixels: np.ndarray) -> np.ndarray | None:
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16:
        return (pixels >> 8).astype(np.uint8)
    if pixels.dtype.kind == "f":
        return (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return None


def _opencv():
    """OpenCV when installed (its decoder releases the GIL, so threads decode in parallel);
    None where it is missing (e.g. a bare GPU box): Pillow then decodes, converts and resizes."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def _bgr_to_grey(bgr: np.ndarray) -> np.ndarray:
    cv2 = _opencv()
    if cv2 is not None:
        return cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2GRAY)
    # OpenCV's weights (ITU-R BT.601), rounded the same way
    grey = bgr[..., 0] * 0.114 + bgr[..., 1] * 0.587 + bgr[..., 2] * 0.299
    return np.clip(grey + 0.5, 0, 255).astype(np.uint8)


def _resize_area(pixels: np.ndarray, image_size: int) -> np.ndarray:
    cv2 = _opencv()
    if cv2 is not None:
        return cv2.resize(pixels, (image_size, image_size), interpolation=cv2.INTER_AREA)
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).resize((image_size, image_size), Image.Resampling.BOX))


def _decode(data: bytes, colour: str, size: str, image_size: int) -> tuple[np.ndarray | None, str | None]:
    """File bytes -> uint8 (S,S) grayscale face, or (None, reason)."""
    cv2 = _opencv()
    if not data:
        return None, "empty_file: file is empty (0 bytes)"
    fmt = _sniff(data)
    problem = _truncation(data, fmt)
    if problem:
        return None, problem
    # ANYCOLOR keeps 1-channel files 1-channel (so colour can be told apart); ANYDEPTH keeps 16 bit.
    pixels = None
    if cv2 is not None:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH)
    if pixels is None:
        pixels, problem = _decode_pil(data, fmt)
        if pixels is None:
            return None, problem
    pixels = _to_uint8(pixels)
    if pixels is None:
        return None, "unsupported_pixel_format: pixel type is neither 8/16-bit integer nor float"
    if pixels.ndim == 3:
        if pixels.shape[2] == 1:
            pixels = pixels[..., 0]
        else:
            bgr = pixels[..., :3]
            if (bgr[..., 0] == bgr[..., 1]).all() and (bgr[..., 1] == bgr[..., 2]).all():
                pixels = bgr[..., 0]  # grey stored in a colour container: nothing to convert
            elif colour == "reject":
                return None, f"colour_image: {pixels.shape[2]}-channel colour image and colour='reject'"
            else:
                pixels = _bgr_to_grey(bgr)
    height, width = pixels.shape[:2]
    if (height, width) != (image_size, image_size):
        if size == "reject":
            return None, f"wrong_size: {width}x{height} image, expected {image_size}x{image_size} and size='reject'"
        pixels = _resize_area(pixels, image_size)
    return np.ascontiguousarray(pixels), None


def _hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _load_chunk(
    chunk: list[_Item], out: np.ndarray, colour: str, size: str, image_size: int
) -> list[tuple[str, str | None]]:
    """Read each file once, hash and decode it into ``out`` (its rows of the image array).

    Returns [(byte hash, problem or None)] in chunk order.
    """
    results: list[tuple[str, str | None]] = []
    for row, item in enumerate(chunk):
        if item.problem is not None:
            results.append(("", item.problem))
            continue
        try:
            with open(item.path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            results.append(("", f"unreadable_file: {exc.strerror or exc}"))
            continue
        try:
            pixels, problem = _decode(data, colour, size, image_size)
        except Exception as exc:  # a decoder bug must quarantine one file, not stop the run
            pixels, problem = None, f"corrupt_image: decoding failed ({type(exc).__name__}: {exc})"
        if pixels is not None:
            out[row] = pixels
        results.append((_hash(data) if data else "", problem))
    return results


def _progress(total: int | None, enabled: bool, desc: str):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False)


def _fail(item: str, reason: str) -> IngestionError:
    return IngestionError(f"{item}: {reason}")


def _decode_items(
    items: list[_Item], on_error: str, colour: str, size: str, image_size: int,
    workers: int | None, progress: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """Decode all items in parallel. Returns (images, kept mask, byte hashes, quarantine)."""
    cv2 = _opencv()

    n = len(items)
    images = np.zeros((n, image_size, image_size), np.uint8)
    kept = np.zeros(n, bool)
    hashes: list[str] = [""] * n
    quarantine: list[dict] = []
    if n == 0:
        return images, kept, np.array(hashes, dtype="<U32"), quarantine
    if workers is None:
        # Threads: cv2.imdecode and file reads release the GIL; more than the cores hides I/O waits.
        workers = min(8, 2 * (os.cpu_count() or 1))
    starts = range(0, n, _CHUNK)
    bar = _progress(n, progress, "decode")
    if cv2 is not None:
        log_level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # we report bad files ourselves
    executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ingest")
    try:
        # Each task fills its own rows of ``images``: no copying of decoded faces between threads.
        futures = [
            executor.submit(_load_chunk, items[s:s + _CHUNK], images[s:s + _CHUNK], colour, size, image_size)
            for s in starts
        ]
        for start, future in zip(starts, futures):
            results = future.result()
            for offset, (digest, problem) in enumerate(results):
                index = start + offset
                if problem is not None:
                    if on_error == "fail":
                        raise _fail(items[index].source_id, problem)
                    quarantine.append({"item": items[index].source_id, "reason": problem})
                    continue
                kept[index] = True
                hashes[index] = digest
            if bar is not None:
                bar.update(len(results))
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        if cv2 is not None:
            cv2.utils.logging.setLogLevel(log_level)
        if bar is not None:
            bar.close()
    return images, kept, np.array(hashes, dtype="<U32"), quarantine


# --------------------------------------------------------------------------- splits


def _stratified_draw(
    labels: np.ndarray, candidates: np.ndarray, fraction: float, seed: int, salt: int
) -> np.ndarray:
    """Boolean mask: ``round(fraction * n_c)`` of each class c among ``candidates``, by seed."""
    chosen = np.zeros(len(labels), bool)
    if fraction <= 0:
        return chosen
    for label in range(len(CLASSES)):
        members = np.flatnonzero(candidates & (labels == label))
        take = int(round(fraction * len(members)))
        if take == 0:
            continue
        # One generator per (seed, draw, class): a class's split does not depend on the others.
        rng = np.random.default_rng([seed, salt, label])
        chosen[rng.permutation(members)[:take]] = True
    return chosen


def _assign_missing_splits(
    labels: np.ndarray, splits: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> np.ndarray:
    """Fill unset splits (class-only trees) and carve val/test out of train when a tree lacks them."""
    splits = splits.copy()
    unset = splits == ""
    if unset.any():
        test = _stratified_draw(labels, unset, test_fraction, seed, 0)
        # val fraction is of the whole, so rescale to what remains after test.
        rest = unset & ~test
        val_share = val_fraction / (1.0 - test_fraction) if test_fraction < 1 else 0.0
        val = _stratified_draw(labels, rest, val_share, seed, 1)
        splits[unset] = "train"
        splits[test] = "test"
        splits[val] = "val"
    return splits


# --------------------------------------------------------------------------- CSV


def _ingest_csv(
    csv_path: Path, on_error: str, size: str, image_size: int, progress: bool
) -> IngestionResult:
    name = csv_path.name
    try:
        handle = open(csv_path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise IngestionError(f"{csv_path}: cannot open ({exc.strerror or exc})") from exc
    images: list[np.ndarray] = []
    labels: list[int] = []
    splits: list[str] = []
    source_ids: list[str] = []
    hashes: list[str] = []
    quarantine: list[dict] = []
    read = 0
    n_pixels = IMAGE_SIZE * IMAGE_SIZE
    bar = _progress(None, progress, "csv rows")
    with handle:
        reader = csv.reader(handle)
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
        at = {c: columns.index(c) for c in CSV_COLUMNS}
        width = max(at.values()) + 1
        row_number = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except (csv.Error, UnicodeDecodeError) as exc:
                # The reader cannot resync inside a broken quoted field: a whole-file error.
                raise IngestionError(f"{name}:row{row_number + 1}: unreadable CSV ({exc})") from exc
            if not row or all(not cell.strip() for cell in row):
                continue  # blank lines are not data rows
            row_number += 1
            read += 1
            item = f"{name}:row{row_number}"
            problem = None
            if len(row) < width:
                problem = f"csv_malformed_row: {len(row)} fields, expected {len(header)}"
            else:
                emotion, pixels, usage = (row[at[c]].strip() for c in CSV_COLUMNS)
                problem = _check_csv_row(emotion, pixels, usage)
            if problem is None:
                values = np.fromstring(pixels, dtype=np.int64, sep=" ")
                if values.size != n_pixels:
                    problem = f"csv_bad_pixel_count: {values.size} pixel values, expected {n_pixels} (48x48)"
                elif values.min() < 0 or values.max() > 255:
                    problem = "csv_pixel_out_of_range: pixel values must lie in 0..255"
            if problem is None:
                face = values.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)
                if image_size != IMAGE_SIZE:
                    if size == "reject":
                        problem = (f"wrong_size: 48x48 row, expected {image_size}x{image_size} "
                                   f"and size='reject'")
                    else:
                        face = _resize_area(face, image_size)
            if problem is not None:
                if on_error == "fail":
                    raise _fail(item, problem)
                quarantine.append({"item": item, "reason": problem})
            else:
                images.append(face)
                labels.append(CSV_TO_CANONICAL[int(emotion)])
                splits.append(CSV_USAGE_TO_SPLIT[usage.lower()])
                source_ids.append(item)
                hashes.append(_hash(pixels.encode()))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return IngestionResult(
        images=np.stack(images) if images else np.zeros((0, image_size, image_size), np.uint8),
        labels=np.asarray(labels, np.int64),
        splits=np.asarray(splits, dtype="<U5"),
        source_ids=np.asarray(source_ids, dtype=str),
        byte_hashes=np.asarray(hashes, dtype="<U32"),
        read=read,
        quarantine=quarantine,
        warnings=[],
        source_kind="csv",
    )


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


# --------------------------------------------------------------------------- ingest


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
    root = _resolve(path)
    if kind == "auto":
        kind = detect_source_kind(root)
    if kind == "csv":
        return _ingest_csv(_csv_file(root), on_error, size, int(image_size), progress)
    if not root.is_dir():
        raise IngestionError(f"{root}: source kind {kind!r} needs a folder")

    warnings: list[dict]
    if kind == "fer_folder":
        items, warnings = _list_fer_folder(root)
        has_split_folders = True
    else:
        items, warnings, has_split_folders = _list_image_folder(root)
    if not items:
        layout = "[<split>/]<class>/*" if kind == "image_folder" else "{train,test}/<class>/*"
        raise IngestionError(f"{root}: no files found (expected {layout})")

    images, kept, hashes, quarantine = _decode_items(
        items, on_error, colour, size, int(image_size), workers, progress
    )
    labels = np.array([-1 if it.label is None else it.label for it in items], np.int64)[kept]
    splits = np.array([it.split or "" for it in items], dtype="<U5")[kept]
    source_ids = np.array([it.source_id for it in items], dtype=str)[kept]
    if kind == "image_folder":
        if has_split_folders:
            # A split tree without val/ or test/: carve the missing split out of train, stratified.
            for split_name, fraction in (("test", test_fraction), ("val", val_fraction)):
                if len(splits) and not (splits == split_name).any() and fraction > 0:
                    drawn = _stratified_draw(labels, splits == "train", fraction, seed, 2 + SPLITS.index(split_name))
                    splits[drawn] = split_name
                    warnings.append({"item": ".", "reason": f"missing_split: no {split_name} folder; "
                                     f"drew {int(drawn.sum())} {split_name} images from train "
                                     f"(stratified, seed {seed})"})
        else:
            splits = _assign_missing_splits(labels, splits, val_fraction, test_fraction, seed)
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


# --------------------------------------------------------------------------- duplicates


def _groups_by_key(keys: np.ndarray) -> list[np.ndarray]:
    """Index arrays of the entries sharing a key, for keys that occur at least twice."""
    if len(keys) == 0:
        return []
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(counts)[:-1]
    return [g for g in np.split(order, bounds) if len(g) > 1]


def _pixel_keys(images: np.ndarray) -> np.ndarray:
    if len(images) == 0:
        return np.zeros(0, np.void)
    flat = np.ascontiguousarray(images.reshape(len(images), -1))
    return flat.view(np.dtype((np.void, flat.shape[1]))).ravel()


def _group_stats(groups: list[np.ndarray], labels: np.ndarray, splits: np.ndarray) -> dict[str, int]:
    cross = train_test = conflicting = 0
    for group in groups:
        group_splits = set(splits[group].tolist())
        cross += len(group_splits) > 1
        train_test += "train" in group_splits and bool(group_splits & {"val", "test"})
        conflicting += len(set(labels[group].tolist())) > 1
    return {
        "groups": len(groups),
        "files_in_groups": int(sum(len(g) for g in groups)),
        "cross_split_groups": int(cross),
        "train_test_groups": int(train_test),
        "conflicting_label_groups": int(conflicting),
    }


def find_duplicates(
    images: np.ndarray, labels: np.ndarray, splits: np.ndarray, byte_hashes: np.ndarray | None = None
) -> dict[str, Any]:
    """Byte-identical and pixel-identical groups (size >= 2), within and across splits.

    Top-level figures are for pixel-identical groups (same decoded pixels; every byte-identical
    group lies inside one); ``"byte"`` and ``"pixel"`` hold the figures for each kind.
    ``members``/``byte_members``: index lists, sorted by first index.
    """
    labels = np.asarray(labels)
    splits = np.asarray(splits)
    pixel_groups = _groups_by_key(_pixel_keys(np.asarray(images)))
    byte_groups: list[np.ndarray] = []
    if byte_hashes is not None:
        hashes = np.asarray(byte_hashes)
        present = np.flatnonzero(hashes != "")
        byte_groups = [present[g] for g in _groups_by_key(hashes[present])]
    pixel_groups.sort(key=lambda g: int(g[0]))
    byte_groups.sort(key=lambda g: int(g[0]))
    pixel = _group_stats(pixel_groups, labels, splits)
    byte = _group_stats(byte_groups, labels, splits)
    return {
        "groups": pixel["groups"],
        "byte_identical_groups": byte["groups"],
        "pixel_identical_groups": pixel["groups"],
        "files_in_groups": pixel["files_in_groups"],
        "cross_split_groups": pixel["cross_split_groups"],
        "train_test_groups": pixel["train_test_groups"],
        "conflicting_label_groups": pixel["conflicting_label_groups"],
        "byte": byte,
        "pixel": pixel,
        "members": [g.tolist() for g in pixel_groups],
        "byte_members": [g.tolist() for g in byte_groups],
    }


def apply_duplicate_policy(
    result: IngestionResult, duplicates: dict[str, Any], policy: str = "keep"
) -> tuple[np.ndarray, list[dict]]:
    """Mask of items to keep, and ``{"item", "reason"}`` for each dropped one.

    ``"drop_leaked"``: drop every member of a group with conflicting labels, and the val/test
    copies of images that also occur in train (pixel-identical groups).
    """
    if policy not in DUPLICATE_POLICIES:
        raise ValueError(f"policy must be one of {DUPLICATE_POLICIES}, got {policy!r}")
    keep = np.ones(len(result.labels), bool)
    dropped: list[dict] = []
    if policy == "keep":
        return keep, dropped
    for index, reason in _leaked_items(duplicates["members"], result.labels, result.splits, result.source_ids):
        keep[index] = False
        dropped.append({"item": str(result.source_ids[index]), "reason": reason})
    return keep, dropped


def _leaked_items(
    members: list, labels: np.ndarray, splits: np.ndarray, source_ids: np.ndarray | None = None
) -> Iterator[tuple[int, str]]:
    """(index, reason) of every item ``drop_leaked`` removes from the duplicate groups ``members``."""
    for group_members in members:
        group = np.asarray(group_members)
        group_labels = labels[group]
        group_splits = splits[group]
        if len(set(group_labels.tolist())) > 1:
            names = ", ".join(sorted({CLASSES[int(v)] for v in group_labels}))
            for index in group:
                yield int(index), f"duplicate_conflicting_labels: {len(group)} identical images labelled {names}"
            continue
        in_train = group_splits == "train"
        if not in_train.any():
            continue
        first_train = group[in_train][0]
        train_copy = str(source_ids[first_train]) if source_ids is not None else f"#{int(first_train)}"
        for index, split in zip(group, group_splits):
            if split != "train":
                yield int(index), f"duplicate_leak: {split} image identical to train image {train_copy}"


def leaked_mask(images: np.ndarray, labels: np.ndarray, splits: np.ndarray) -> np.ndarray:
    """True for the items ``duplicates: drop_leaked`` would remove, found from the arrays alone.

    Lets evaluation report a split both as published (duplicates kept) and without the copies of
    training images and the conflicting-label groups, from the same model and the same logits.
    """
    labels, splits = np.asarray(labels), np.asarray(splits)
    mask = np.zeros(len(labels), bool)
    members = find_duplicates(images, labels, splits)["members"]
    for index, _ in _leaked_items(members, labels, splits):
        mask[index] = True
    return mask


# --------------------------------------------------------------------------- report


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
        split: {name: int(((splits == split) & (labels == c)).sum()) for c, name in enumerate(CLASSES)}
        for split in SPLITS
    }
    quarantine = [{"item": str(q["item"]), "reason": str(q["reason"])} for q in [*result.quarantine, *dropped]]
    reasons = Counter(reason_category(q["reason"]) for q in quarantine)
    examples = []
    for members in duplicates.get("members", [])[:max_examples]:
        examples.append([
            {"item": str(result.source_ids[i]), "split": str(result.splits[i]), "label": CLASSES[int(result.labels[i])]}
            for i in members
        ])
    kept = int(keep_mask.sum())
    return {
        "source_kind": result.source_kind,
        "read": int(result.read),
        "kept": kept,
        "quarantined": len(quarantine),
        "consistent": int(result.read) == kept + len(quarantine),
        "counts": counts,
        "totals": {split: int(sum(counts[split].values())) for split in SPLITS},
        "quarantine": quarantine,
        "reasons": dict(sorted(reasons.items())),
        "warnings": [{"item": str(w["item"]), "reason": str(w["reason"])} for w in result.warnings],
        "duplicates": {
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
        },
    }


__all__: Iterable[str] = (
    "IngestionError",
    "IngestionResult",
    "SOURCE_KINDS",
    "apply_duplicate_policy",
    "detect_source_kind",
    "find_duplicates",
    "ingest",
    "quality_report",
    "reason_category",
)
