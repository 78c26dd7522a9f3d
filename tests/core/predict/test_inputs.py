"""Tests for core.predict.inputs: the folder scan of fer-predict and the predict pipeline (images by
the decoder's formats, videos, subfolders, hidden files, what is skipped and said so)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fer_pipeline.core.predict.inputs import MediaFiles, folder_files, scan_media


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_scan_media_sorts_a_folder_tree_into_images_videos_and_skipped(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.MP4", "c.mkv", "notes.txt", "sub/d.TIFF", "sub/data.csv", "sub/deeper/e.tif",
                 "sub/deeper/f.avi", ".hidden.jpg", ".git/x.png", "sub/.cache/y.jpg"):
        touch(tmp_path / name)
    media = scan_media([tmp_path, tmp_path / "c.mkv", tmp_path / "a.jpg", tmp_path / "notes.txt"])
    relative = {kind: [p.relative_to(tmp_path).as_posix() for p in getattr(media, kind)]
                for kind in ("images", "videos", "skipped")}
    assert relative == {
        "images": ["a.jpg", "sub/d.TIFF", "sub/deeper/e.tif", "notes.txt"],  # a named file is tried whatever it is
        "videos": ["b.MP4", "c.mkv", "sub/deeper/f.avi"],  # the named c.mkv is not listed twice
        "skipped": ["sub/data.csv"],  # hidden files and folders: neither taken nor reported
    }
    assert media.report() == [f"skipped 1 file that is not an image or a video: {tmp_path / 'sub' / 'data.csv'}"]
    with pytest.raises(FileNotFoundError):
        scan_media([tmp_path / "other.avi"])


def test_the_report_names_the_first_five_skipped_files() -> None:
    assert MediaFiles().report() == []
    skipped = [Path(f"in/n{i}.txt") for i in range(7)]
    assert MediaFiles(skipped=skipped).report() == [
        f"skipped 7 files that are not images or videos: {', '.join(str(p) for p in skipped[:5])}, ... (first 5 of 7)"]


@pytest.mark.skipif(os.name == "nt", reason="symbolic links need privileges on Windows")
def test_a_linked_folder_is_followed_once(tmp_path: Path) -> None:
    touch(tmp_path / "photos" / "a.png")
    touch(tmp_path / "elsewhere" / "b.png")
    (tmp_path / "photos" / "linked").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "photos" / "loop").symlink_to(tmp_path / "photos")  # back to the top: not searched again
    photos = tmp_path / "photos"
    assert folder_files(photos) == [photos / "a.png", photos / "linked" / "b.png"]


def test_a_folder_that_cannot_be_listed_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch(tmp_path / "a.png")
    touch(tmp_path / "locked" / "b.png")
    scandir = os.scandir

    def refuse_locked(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse_locked)
    media = scan_media([tmp_path])
    assert media.images == [tmp_path / "a.png"]
    assert media.report() == [f"could not search 1 folder(s): {tmp_path / 'locked'}: Permission denied"]
