"""External labelled sets (CK+, JAFFE, ...), before any byte is read: their parameters, the
listing of their files and the labelling of those files with the model's classes.

Each set is one entry of ``evaluate.external_sets`` (``conf/base/parameters_evaluate.yml``),
named (the name goes into metric keys and file names)::

    ckplus48:
      path: /data/CK+48      # <path>/<class folder>/<image files>
      kind: crops            # crops | photos
      class_map: {anger: angry, sadness: sad, contempt: null}
      label_pattern: null    # or a regex on the file name whose first group is the class name

The first two steps of the route (``external_sets`` decodes, classifies and scores):

1. **List.** Every file under ``path`` (any depth). Hidden files and documentation / metadata
   files (``IGNORED_SUFFIXES``, files without a suffix) are set aside and listed as
   ``ignored``. A file's class name is its top folder below ``path``, or with ``label_pattern``
   the first group of that regex searched in the file name (folders then do not matter; a file
   the pattern does not match stops the run, naming the first few). Without a pattern, files
   lying directly in ``path`` are in no class folder: ignored and listed.
2. **Label.** The model file's classes (``config["classes"]``) are the label space. A class
   name equal to one of them (case-insensitive) is that class; ``class_map`` (case-insensitive
   keys) maps the others, and overrides the identity; ``null`` drops a name's files (counted by
   name in ``dropped_by_class_map``). A name that is neither stops the run with an error listing
   every such name and how to map or drop it; so does a map value that is not a model class.
   All sets are listed and labelled before any is scored, so a typo fails in seconds.
"""

from __future__ import annotations

import difflib
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.config import reject_unknown_keys
from fer_pipeline.core.faces.detector import DEFAULT_ALIGN, DEFAULT_DETECTOR, check_detector_kind, detector_options

#: The keys of one entry of ``evaluate.external_sets``.
EXTERNAL_SET_KEYS: tuple[str, ...] = ("path", "kind", "class_map", "label_pattern", "detector", "align", "min_score",
                                      "min_face")

#: ``crops``: face crops of any size, grey or colour, decoded as ingestion does; ``photos``:
#: full photos, faces found by the predict stage's detector.
KINDS: tuple[str, ...] = ("crops", "photos")

#: Set names: they become MLflow metric keys and file names.
_SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

#: Files set aside (listed as ``ignored``), not decoded: documentation and metadata next to the
#: images ("" = no suffix, e.g. a README). Hidden files (".DS_Store") are set aside too.
IGNORED_SUFFIXES = frozenset({
    "", ".json", ".md", ".txt", ".rst", ".yml", ".yaml", ".csv", ".tsv", ".xml", ".html", ".htm", ".pdf",
    ".zip", ".tar", ".gz", ".ini", ".db", ".py", ".m", ".mat",
})

#: File names quoted in the label_pattern mismatch error.
MISMATCH_SHOWN = 5


class ExternalSetError(ValueError):
    """An external set's parameters or files do not make a labelled set (the message says how to fix it)."""


def _norm(name: Any) -> str:
    return str(name).strip().casefold()


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExternalSet:
    """One validated entry of ``evaluate.external_sets``."""

    name: str
    path: Path
    kind: str
    #: as configured: class name -> model class name, or None (drop)
    class_map: dict[str, str | None] = field(default_factory=dict)
    label_pattern: str | None = None
    #: ``photos``: the face detector (``faces.detector.make_detector``), the predict stage's default
    detector: str = DEFAULT_DETECTOR
    #: ``photos``: faces with landmarks (YuNet's) levelled and framed like FER2013 (``faces.align``)
    align: bool = DEFAULT_ALIGN
    #: ``photos``: the least detector score and the smallest face kept (``detector.detector_options``;
    #: None: the detector's defaults, as the predict stage's ``min_score`` and ``min_face``)
    min_score: float | None = None
    min_face: float | None = None

    @property
    def where(self) -> str:
        """Where the entry is, for messages."""
        return f"evaluate.external_sets.{self.name}"

    def make_detector(self):  # -> faces.detector.Detector
        """A ``photos`` set's face detector, with its settings (imports OpenCV)."""
        from fer_pipeline.core.faces.detector import make_detector

        return make_detector(self.detector, **detector_options(self.detector, self.min_score, self.min_face))

    @classmethod
    def from_params(cls, name: Any, params: Any) -> ExternalSet:
        """Validate one entry: unknown keys (with a hint), a missing path or kind, a map that is not
        a mapping of names to names or null, a pattern that does not compile or has no group."""
        name = str(name)
        if not _SET_NAME.match(name):
            raise ExternalSetError(
                f"external set name {name!r}: use letters, digits, '_', '-' and '.' only, starting with a "
                "letter or digit (the name goes into MLflow metric keys and file names)")
        where = f"evaluate.external_sets.{name}"
        if not isinstance(params, Mapping):
            raise ExternalSetError(f"{where} must be a mapping with keys {', '.join(EXTERNAL_SET_KEYS)}, "
                                   f"got {type(params).__name__}")
        reject_unknown_keys(params, EXTERNAL_SET_KEYS, where)
        if not params.get("path"):
            raise ExternalSetError(f"{where}: no path given (path: <folder of the set>)")
        kind = params.get("kind")
        if kind not in KINDS:
            raise ExternalSetError(f"{where}.kind must be one of {', '.join(KINDS)} (crops: face crops, decoded "
                                   f"as ingestion does; photos: full photos, faces detected first), got {kind!r}")
        class_map = params.get("class_map") or {}
        if not isinstance(class_map, Mapping):
            raise ExternalSetError(f"{where}.class_map must be a mapping (class name -> model class or null), "
                                   f"got {type(class_map).__name__}")
        seen: dict[str, str] = {}
        checked: dict[str, str | None] = {}
        for key, value in class_map.items():
            if value is not None and not isinstance(value, str):
                raise ExternalSetError(f"{where}.class_map[{key!r}] must be a model class name or null, got {value!r}")
            if _norm(key) in seen:
                raise ExternalSetError(f"{where}.class_map names {seen[_norm(key)]!r} and {key!r}, the same name "
                                       "(names are compared case-insensitively)")
            seen[_norm(key)] = str(key)
            checked[str(key)] = value
        pattern = params.get("label_pattern")
        if pattern is not None:
            if not isinstance(pattern, str):
                raise ExternalSetError(f"{where}.label_pattern must be a regular expression string, got {pattern!r}")
            try:
                compiled = re.compile(pattern)
            except re.error as error:
                raise ExternalSetError(f"{where}.label_pattern {pattern!r} is not a regular expression: {error}") \
                    from error
            if compiled.groups < 1:
                raise ExternalSetError(f"{where}.label_pattern {pattern!r} has no group: its first group "
                                       r"must capture the class name, e.g. '^[A-Z]+\.([A-Z]{2})\d'")
        try:
            detector = check_detector_kind(params.get("detector", DEFAULT_DETECTOR), f"{where}.detector")
        except ValueError as error:
            raise ExternalSetError(str(error)) from None
        align = params.get("align", DEFAULT_ALIGN)
        if not isinstance(align, bool):
            raise ExternalSetError(f"{where}.align must be true or false, got {align!r}")
        min_score, min_face = params.get("min_score"), params.get("min_face")
        try:
            detector_options(detector, min_score, min_face, where)
        except ValueError as error:
            raise ExternalSetError(str(error)) from None
        return cls(name, Path(os.path.expanduser(str(params["path"]))), kind, checked, pattern, detector, align,
                   min_score, min_face)


def parse_external_sets(params: Mapping[str, Any] | None) -> list[ExternalSet]:
    """Every entry of ``evaluate.external_sets`` validated (None or {} = no sets)."""
    if not params:
        return []
    if not isinstance(params, Mapping):
        raise ExternalSetError(f"evaluate.external_sets must be a mapping of set name -> set, got "
                               f"{type(params).__name__}")
    return [ExternalSet.from_params(name, entry) for name, entry in params.items()]


def model_classes(config: Mapping[str, Any]) -> list[str]:
    """The label space: the class names the model file records (FER2013's for older files)."""
    return [str(c) for c in config.get("classes", CLASSES)]


# --------------------------------------------------------------------------------------------
# Listing and labelling
# --------------------------------------------------------------------------------------------


@dataclass
class Listing:
    """The labelled files of one set, before any byte is read."""

    #: (name relative to the set's path, absolute path, model class index), sorted by name
    files: list[tuple[str, Path, int]]
    #: image files found (labelled + dropped)
    found: int
    #: class name as spelled in the set -> files dropped by ``class_map: null``
    dropped_by_class_map: dict[str, int]
    #: files set aside unread: {file, reason}
    ignored: list[dict[str, str]]
    #: class name as spelled in the set -> model class name (or None: dropped)
    resolved: dict[str, str | None]
    #: class_map keys that named no file of the set
    unused_class_map_keys: list[str]


def _ignore_reason(name: str) -> str | None:
    if name.startswith("."):
        return "hidden file"
    if Path(name).suffix.lower() in IGNORED_SUFFIXES:
        return "not an image (documentation or metadata file)"
    return None


def _walk(folder: Path, root: Path) -> list[tuple[str, Path]]:
    """(posix name relative to root, path) of every file below ``folder``, hidden folders skipped, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for file_name in sorted(filenames):
            path = Path(dirpath) / file_name
            found.append((path.relative_to(root).as_posix(), path))
    return found


def _candidates(spec: ExternalSet) -> tuple[list[tuple[str, Path, str]], list[dict[str, str]]]:
    """(files with their class name as spelled in the set, ignored files)."""
    root = spec.path
    if not root.exists():
        raise FileNotFoundError(f"{spec.where}.path: {root} does not exist (an external set is not shipped "
                                "with the project: download it and point path at its folder)")
    if not root.is_dir():
        raise ExternalSetError(f"{spec.where}.path: {root} is not a folder")
    candidates: list[tuple[str, Path, str]] = []
    ignored: list[dict[str, str]] = []
    if spec.label_pattern is not None:
        pattern = re.compile(spec.label_pattern)
        mismatched: list[str] = []
        for rel, path in _walk(root, root):
            reason = _ignore_reason(path.name)
            if reason:
                ignored.append({"file": rel, "reason": reason})
                continue
            match = pattern.search(path.name)
            if match is None or not match.group(1):
                mismatched.append(rel)
                continue
            candidates.append((rel, path, match.group(1)))
        if mismatched:
            shown = ", ".join(repr(m) for m in mismatched[:MISMATCH_SHOWN])
            more = f" and {len(mismatched) - MISMATCH_SHOWN} more" if len(mismatched) > MISMATCH_SHOWN else ""
            raise ExternalSetError(
                f"{spec.where}: {len(mismatched)} of {len(mismatched) + len(candidates)} image files have a name "
                f"that label_pattern {spec.label_pattern!r} does not match (its first group must capture the "
                f"class name): {shown}{more}. Fix the pattern, or move those files out of {root}")
        return candidates, ignored
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.is_dir():
            if entry.name.startswith("."):
                continue
            for rel, path in _walk(entry, root):
                reason = _ignore_reason(path.name)
                if reason:
                    ignored.append({"file": rel, "reason": reason})
                else:
                    candidates.append((rel, path, entry.name))
        elif entry.is_file():
            reason = _ignore_reason(entry.name) or "not in a class folder (<path>/<class>/<files>)"
            ignored.append({"file": entry.name, "reason": reason})
    return candidates, ignored


def _map_example(names: Sequence[str], classes: Sequence[str]) -> str:
    pairs = []
    for name in names:
        close = difflib.get_close_matches(_norm(name), [_norm(c) for c in classes], n=1, cutoff=0.6)
        target = next((c for c in classes if _norm(c) == close[0]), None) if close else None
        pairs.append(f"{name}: {target if target else 'null'}")
    return "{" + ", ".join(pairs) + "}"


def resolve_class_names(spec: ExternalSet, names: Sequence[str], classes: Sequence[str]) -> dict[str, str | None]:
    """Class name as spelled in the set -> model class name, or None (dropped by the map).

    Raises ``ExternalSetError`` listing every map value that is not a model class, or else every
    name that is neither a model class nor in the map (with a ``class_map`` to start from)."""
    by_norm = {_norm(c): c for c in classes}
    class_map = {_norm(k): v for k, v in spec.class_map.items()}
    bad_targets = {k: v for k, v in spec.class_map.items() if v is not None and _norm(v) not in by_norm}
    if bad_targets:
        listed = ", ".join(f"{k!r} -> {v!r}" for k, v in bad_targets.items())
        raise ExternalSetError(
            f"{spec.where}.class_map maps to names that are not the model's classes: {listed}. The model's "
            f"classes: {', '.join(classes)} (map to one of them, or null to drop the files)")
    resolved: dict[str, str | None] = {}
    unknown: list[str] = []
    for name in names:
        key = _norm(name)
        if key in class_map:
            target = class_map[key]
            resolved[name] = None if target is None else by_norm[_norm(target)]
        elif key in by_norm:
            resolved[name] = by_norm[key]
        else:
            unknown.append(name)
    if unknown:
        raise ExternalSetError(
            f"{spec.where}: {len(unknown)} class name(s) are neither one of the model's classes "
            f"({', '.join(classes)}) nor in class_map: {', '.join(repr(u) for u in unknown)}. Map each to a "
            f"model class, or drop its files with null, in {spec.where}.class_map, e.g. "
            f"class_map: {_map_example(unknown, classes)}")
    return resolved


def list_external_set(spec: ExternalSet, classes: Sequence[str]) -> Listing:
    """The set's labelled files (nothing decoded yet); ``ExternalSetError`` / ``FileNotFoundError``
    when the parameters and the files do not make a labelled set."""
    candidates, ignored = _candidates(spec)
    if not candidates:
        layout = "files whose names label_pattern matches" if spec.label_pattern else "<path>/<class>/<image files>"
        raise ExternalSetError(f"{spec.where}: no image files under {spec.path} (expected {layout}"
                               + (f"; set aside: {len(ignored)} files" if ignored else "") + ")")
    spelled = list(dict.fromkeys(name for *_, name in candidates))
    resolved = resolve_class_names(spec, spelled, classes)
    index = {name: i for i, name in enumerate(classes)}
    files: list[tuple[str, Path, int]] = []
    dropped: Counter[str] = Counter()
    for rel, path, name in candidates:
        target = resolved[name]
        if target is None:
            dropped[name] += 1
        else:
            files.append((rel, path, index[target]))
    if not files:
        raise ExternalSetError(f"{spec.where}: class_map drops every file ({dict(dropped)}): nothing to score")
    used = {_norm(n) for n in spelled}
    unused = [k for k in spec.class_map if _norm(k) not in used]
    return Listing(files, len(candidates), dict(dropped), ignored, resolved, unused)
