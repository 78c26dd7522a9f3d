"""Input paths -> the image and video files to predict on: the one folder scan of ``fer-predict``,
the predict pipeline and ``predict_photos``.

A file named explicitly is taken whatever its extension: a video by its extension, anything else
is tried as an image (and reported unreadable when it is not one). A folder is searched
recursively in sorted order (by name, each subfolder where its name sorts; a linked folder is
followed, once); files and folders whose names start with "." are left out silently. Its files
are images (the extensions of the formats the image decoder reads,
``core.ingestion.decode.FORMAT_EXTENSIONS`` and ``imdecode_formats``), videos
(``VIDEO_EXTENSIONS``) or skipped, and ``MediaFiles.report`` gives the callers the lines that say
which were skipped. Kedro-, torch- and (until a scan) OpenCV-free.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fer_pipeline.core.ingestion.decode import FORMAT_EXTENSIONS, imdecode_formats

#: Extensions taken as videos (case-insensitive), in folders and when named explicitly.
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv")

#: How many of the skipped files a report names.
REPORT_NAMES = 5


@functools.cache
def image_extensions() -> tuple[str, ...]:
    """The extensions (lower case) of the image files a folder scan takes: those of every format
    the installed decoder reads (.jpg .jpeg .png .bmp .webp .tif .tiff .pgm ... and .gif with
    OpenCV 4.11 or later)."""
    return tuple(ext for fmt in imdecode_formats() for ext in FORMAT_EXTENSIONS[fmt])


def is_image(path: str | os.PathLike) -> bool:
    """Whether a folder scan takes ``path`` as an image, by its extension (case-insensitive)."""
    return Path(path).suffix.lower() in image_extensions()


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def name_list(paths: Sequence[str | os.PathLike], limit: int = REPORT_NAMES) -> str:
    """``a, b, c`` for a short list; ``a, b, ... (first 2 of 7)`` past ``limit`` paths."""
    names = ", ".join(str(p) for p in paths[:limit])
    return names + (f", ... (first {limit} of {len(paths)})" if len(paths) > limit else "")


@dataclass
class MediaFiles:
    """What ``scan_media`` found. ``images``, ``videos``: in input order (a folder's in sorted
    order), duplicates dropped. ``skipped``: the files in the folders that are neither.
    ``unsearched``: "folder: reason" for each folder that could not be listed."""

    images: list[Path] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    unsearched: list[str] = field(default_factory=list)

    def report(self, limit: int = REPORT_NAMES) -> list[str]:
        """The lines that say what the scan left out (none when nothing): one for the skipped
        files, naming the first ``limit``, and one for the folders that could not be searched."""
        lines = []
        if self.skipped:
            what = ("file that is not an image or a video" if len(self.skipped) == 1
                    else "files that are not images or videos")
            lines.append(f"skipped {len(self.skipped)} {what}: {name_list(self.skipped, limit)}")
        if self.unsearched:
            lines.append(f"could not search {len(self.unsearched)} folder(s): {'; '.join(self.unsearched)}")
        return lines


def folder_files(folder: str | os.PathLike, unsearched: list[str] | None = None) -> list[Path]:
    """Every file under ``folder``, recursively, in sorted order (by name; a subfolder's files
    where its name sorts), hidden files and folders (".name") left out, a linked folder followed
    unless it leads back to one already searched. A folder that cannot be listed is appended to
    ``unsearched`` as "folder: reason"."""
    files: list[Path] = []
    _walk(Path(folder), files, [] if unsearched is None else unsearched, set())
    return files


def _walk(folder: Path, files: list[Path], unsearched: list[str], searched: set[Path]) -> None:
    real = folder.resolve()
    if real in searched:  # a link back to a folder already searched: its files are listed once
        return
    searched.add(real)
    try:
        with os.scandir(folder) as scan:
            entries = sorted((entry for entry in scan if not entry.name.startswith(".")), key=lambda e: e.name)
    except OSError as error:
        unsearched.append(f"{folder}: {error.strerror or error}")
        return
    for entry in entries:
        path = folder / entry.name
        try:
            is_folder = entry.is_dir()  # follows links
        except OSError:
            is_folder = False
        if is_folder:
            _walk(path, files, unsearched, searched)
        else:
            files.append(path)


def scan_media(paths: Iterable[str | os.PathLike]) -> MediaFiles:
    """Inputs (files and folders) -> ``MediaFiles``: named files as given (a video by its
    extension, anything else an image), folders searched by ``folder_files`` and their files
    sorted into images, videos and skipped by extension (``is_image``, ``is_video``). A file
    reached twice (named and in a folder, or two paths to it) is kept once, where first seen.
    Raises FileNotFoundError for a path that does not exist."""
    media, seen, skipped = MediaFiles(), set(), {}

    def take(found: list[Path], file: Path) -> None:
        key = file.resolve()
        if key not in seen:
            seen.add(key)
            found.append(file)

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in folder_files(path, media.unsearched):
                if is_video(file) or is_image(file):
                    take(media.videos if is_video(file) else media.images, file)
                else:
                    skipped.setdefault(file.resolve(), file)
        elif path.exists():
            take(media.videos if is_video(path) else media.images, path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    media.skipped = [file for key, file in skipped.items() if key not in seen]  # named ones are tried
    return media
