"""fer-predict's ``--output`` folder: it holds one run's results, whole, and never a file of the user's.

A run writes into a hidden folder beside ``--output`` (``.<name>.<random>.partial``), lists what
it wrote in ``MANIFEST`` there, and swaps it into place at the end (two renames on one file
system), so the folder never mixes two runs (the annotated images of an earlier run beside a new
CSV) and is never left half-written. A run that reads no input leaves it as it was; an interrupted
one leaves it as it was and keeps its finished results in the hidden folder, whose path it prints.

What it replaces: nothing, an empty folder, or a folder that an earlier run wrote (every file in it
listed in that run's manifest). Anything else is refused before a model is loaded
(``OutputFolderError``): fer-predict deletes no file it did not write.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

#: The list of files a run wrote, in its output folder: what the next run may replace.
MANIFEST = ".fer-predict.json"
#: At most this many of the files that are not fer-predict's are named in a refusal.
SHOWN_FILES = 3


class OutputFolderError(ValueError):
    """``--output`` cannot take this run's results: it holds files fer-predict did not write."""


def files_under(folder: Path) -> list[str]:
    """Every file (and link) under ``folder``, as sorted POSIX paths relative to it; folders left out."""
    found = []
    for root, dirs, files in os.walk(folder):
        links = [name for name in dirs if (Path(root) / name).is_symlink()]  # os.walk does not enter them
        found += [(Path(root) / name).relative_to(folder).as_posix() for name in (*files, *links)]
    return sorted(found)


def manifest_files(folder: Path) -> set[str]:
    """The files ``folder``'s manifest lists; empty when it has none, or one fer-predict did not write."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    files = manifest.get("files") if isinstance(manifest, dict) and manifest.get("written_by") == "fer-predict" else None
    return {name for name in files if isinstance(name, str)} if isinstance(files, list) else set()


def foreign_files(folder: Path) -> list[str]:
    """The files under ``folder`` that no fer-predict run wrote (not in its manifest)."""
    ours = manifest_files(folder) | {MANIFEST}
    return [name for name in files_under(folder) if name not in ours]


def check_output(output: Path) -> Path:
    """``output`` as an absolute path, if a run may write its results there (see the module's
    docstring); ``OutputFolderError`` saying why not."""
    folder = Path(os.path.abspath(output))
    if folder.is_symlink():  # the swap renames the folder itself: use the real one
        folder = folder.resolve()
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"--output {output} is a file: give a folder")
    if Path.cwd().resolve().is_relative_to(folder.resolve()):
        raise OutputFolderError(f"--output {output} holds the working directory: give a folder of its own")
    foreign = foreign_files(folder) if folder.is_dir() else []
    if foreign:
        shown = ", ".join(foreign[:SHOWN_FILES]) + (f" and {len(foreign) - SHOWN_FILES} more"
                                                     if len(foreign) > SHOWN_FILES else "")
        raise OutputFolderError(f"--output {output} holds files fer-predict did not write ({shown}): "
                                "give a new or empty folder, or move them")
    return folder


def _sibling(folder: Path, suffix: str) -> Path:
    """A new name beside ``folder``: hidden, and on its file system, so renames to it are atomic."""
    while True:
        candidate = folder.with_name(f".{folder.name}.{secrets.token_hex(4)}.{suffix}")
        if not candidate.exists() and not candidate.is_symlink():
            return candidate


def start_staging(folder: Path) -> Path:
    """The hidden folder beside ``folder`` that the run writes into. ``mkdir``, not ``mkdtemp``:
    the folder becomes ``--output``, with the permissions the user's umask gives (mkdtemp's are 0700)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    while True:
        staging = _sibling(folder, "partial")
        try:
            staging.mkdir()
            return staging
        except FileExistsError:  # taken between the check and the mkdir: draw another name
            continue


def publish(staging: Path, folder: Path) -> None:
    """Write the manifest into ``staging`` and put it in ``folder``'s place; the earlier run's
    folder is deleted only once it is out of the way. Checked again first: files added to
    ``folder`` during the run are not deleted (``OutputFolderError``; the results stay in ``staging``)."""
    check_output(folder)
    files = files_under(staging)
    manifest = {"written_by": "fer-predict", "files": files}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    old = None
    if folder.exists():
        old = _sibling(folder, "old")
        os.rename(folder, old)  # fails, leaving all as it was, for a mount point or another file system
    try:
        os.rename(staging, folder)
    except OSError:
        if old is not None:
            os.rename(old, folder)  # the earlier results back in place
        raise
    if old is not None:
        shutil.rmtree(old)


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
