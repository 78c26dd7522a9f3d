"""Videos -> faces per frame -> emotions, with a per-frame CSV, face tracks and an annotated video.

Kedro-free, like the photo path (``core.predict.photos``), and built from the same pieces:
``core.faces`` (``EmotionRecognizer``'s face finding and labelling, ``annotate``) and
``core.predict.workers``. A video is streamed: frames are decoded in
order by one thread (``cv2.VideoCapture`` is not thread-safe) and searched for faces by a few
(``map_ordered``), while the calling thread classifies the crops of ``batch_frames`` frames in
one model call, tracks the faces and writes the annotated frames, so memory stays bounded
whatever the video's length.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.faces.annotate import annotate
from fer_pipeline.core.faces.crops import DETECTION_COLUMNS, FoundFaces
from fer_pipeline.core.faces.detector import box_iou
from fer_pipeline.core.faces.recognizer import EmotionRecognizer, Face, FaceFinder
from fer_pipeline.core.predict.workers import map_ordered
from fer_pipeline.files import atomic_path, temporary_path_beside

log = logging.getLogger(__name__)

#: Container -> FourCC the installed opencv-python-headless (FFmpeg backend) writes. ``avc1``
#: (H.264) has no encoder in the wheel; ``mp4v`` (MPEG-4 Part 2) and ``MJPG`` always work.
VIDEO_CODECS: dict[str, str] = {".mp4": "mp4v", ".avi": "MJPG"}

#: Frame rate assumed when the container does not say (some streams report 0 or NaN).
FALLBACK_FPS = 25.0


class UnreadableVideoError(ValueError):
    """The file cannot be opened as a video, or not one frame of it could be decoded."""


# --------------------------------------------------------------------------------------------
# Tracking
# --------------------------------------------------------------------------------------------


class IoUTracker:
    """Gives each face a ``track_id`` kept across frames: a box continues the track whose last
    box it overlaps most (IoU >= ``min_iou``, greedy, best pairs first), else starts a new one.
    A track unseen for more than ``max_missed`` processed frames ends (its id is not reused).
    Enough for the few, slowly moving faces of a video call or a clip; not a re-identifier."""

    def __init__(self, min_iou: float = 0.3, max_missed: int = 5) -> None:
        self.min_iou = min_iou
        self.max_missed = max_missed
        self._tracks: dict[int, tuple[tuple[int, int, int, int], int]] = {}  # id -> (last box, missed)
        self._next_id = 0

    def update(self, boxes: Sequence[tuple[int, int, int, int]]) -> list[int]:
        """Track ids of ``boxes`` (one processed frame), in the same order."""
        pairs = sorted(
            ((box_iou(box, last), i, track) for i, box in enumerate(boxes) for track, (last, _) in self._tracks.items()),
            reverse=True,
        )
        ids: list[int | None] = [None] * len(boxes)
        taken: set[int] = set()
        for iou, i, track in pairs:
            if iou < self.min_iou:
                break
            if ids[i] is None and track not in taken:
                ids[i] = track
                taken.add(track)
        for i, track in enumerate(ids):
            if track is None:
                ids[i] = track = self._next_id
                self._next_id += 1
                taken.add(track)
        self._tracks = {
            track: (last, missed + 1) for track, (last, missed) in self._tracks.items()
            if track not in taken and missed + 1 <= self.max_missed
        }
        self._tracks.update({track: (tuple(boxes[i]), 0) for i, track in enumerate(ids)})
        return ids  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Reading and writing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoInfo:
    """What the container says: frames per second, (width, height), frame count (0: unknown)."""

    fps: float
    size: tuple[int, int]
    frame_count: int


def quiet_ffmpeg() -> None:
    """Keep FFmpeg's own complaints ("[mov,mp4,...] moov atom not found", "[mjpeg] overread")
    off stderr: raw lines printed by C code, beside the message that names the file and the
    problem (``UnreadableVideoError``, ``VideoResult.error``). OpenCV reads the variable once,
    when its FFmpeg backend starts (the process's first VideoCapture or VideoWriter), so it is
    set before that; a level the user set, to debug a codec, is kept."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def open_video(path: str | os.PathLike):  # -> (cv2.VideoCapture, VideoInfo)
    """``cv2.VideoCapture`` on ``path`` and its ``VideoInfo``; ``UnreadableVideoError`` naming the
    file when OpenCV cannot open it (not a video, or an MP4 cut before its index, the moov atom)."""
    quiet_ffmpeg()
    import cv2

    path = Path(path)
    if not path.is_file():
        raise UnreadableVideoError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise UnreadableVideoError(f"{path}: empty file (0 bytes)")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise UnreadableVideoError(
            f"{path}: OpenCV cannot open it as a video (not a video, an unsupported codec, or a file cut "
            "short before its index, e.g. an MP4 without its moov atom)")
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    info = VideoInfo(
        fps=fps if math.isfinite(fps) and fps > 0 else FALLBACK_FPS,
        size=(int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))),
        frame_count=max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)),
    )
    return capture, info


def read_frames(capture) -> Iterator[tuple[int, np.ndarray]]:
    """(index, BGR frame) until the stream ends or breaks; the caller compares the count with
    the container's to tell a break from the end."""
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok or frame is None:
            return
        yield index, frame
        index += 1


class AnnotatedVideoWriter:
    """``cv2.VideoWriter`` into a temporary file beside ``path``, renamed onto ``path`` by
    ``close()``: a run killed half-way never leaves a video that looks finished (an MP4 without
    its index). The codec follows the extension (``VIDEO_CODECS``); opened on the first frame,
    whose size the video takes."""

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_CODECS:
            raise ValueError(f"annotated video must be one of {sorted(VIDEO_CODECS)}, got {self.path.name}")
        self.fps = fps
        self.frames = 0
        self._writer = None
        self._tmp: Path | None = None

    def write(self, frame_bgr: np.ndarray) -> None:
        import cv2

        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # The FFmpeg backend picks the container from the name's extension, so the temp keeps it.
            self._tmp = temporary_path_beside(self.path, suffix=self.path.suffix)
            height, width = frame_bgr.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[self.path.suffix.lower()])
            self._writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, (width, height))
            if not self._writer.isOpened():
                self.discard()
                raise RuntimeError(f"OpenCV cannot write {self.path.suffix} video ({VIDEO_CODECS[self.path.suffix.lower()]})")
        self._writer.write(frame_bgr)
        self.frames += 1

    def close(self) -> Path | None:
        """Finish the file and move it into place; None when no frame was written."""
        if self._writer is None:
            return None
        self._writer.release()
        self._writer = None
        os.replace(self._tmp, self.path)
        return self.path

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._tmp is not None and self._tmp.exists():
            self._tmp.unlink()


# --------------------------------------------------------------------------------------------
# Video -> predictions
# --------------------------------------------------------------------------------------------


@dataclass
class VideoResult:
    """Outcome of ``predict_video``. ``rows``: one dict per face of each processed frame (file,
    frame, time_s, track_id, x, y, w, h, emotion, confidence, prob_<class>..., then the detector's
    score and landmarks, ``DETECTION_COLUMNS``, None for Haar) and one with only
    file/frame/time_s for a processed frame without a face. ``error``: why reading stopped early
    (the frames before it are in ``rows`` and the annotated video), None for a complete read."""

    file: str
    classes: tuple[str, ...]
    info: VideoInfo
    every_n_frames: int = 1
    frames_read: int = 0
    frames_processed: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    annotated: Path | None = None
    seconds: float = 0.0
    error: str | None = None

    @property
    def num_faces(self) -> int:
        return sum(1 for row in self.rows if row.get("track_id") is not None)

    @property
    def num_tracks(self) -> int:
        return len({row["track_id"] for row in self.rows if row.get("track_id") is not None})

    @property
    def frames_per_second(self) -> float:
        """Frames read (every frame, also the skipped ones) per second of processing."""
        return self.frames_read / self.seconds if self.seconds > 0 else 0.0


def video_csv_columns(classes: Sequence[str]) -> list[str]:
    return ["file", "frame", "time_s", "track_id", "x", "y", "w", "h", "emotion", "confidence",
            *[f"prob_{c}" for c in classes], *DETECTION_COLUMNS]


@dataclass
class _Frame:
    """A decoded frame waiting for its labels: the faces found when it was processed, else None."""

    index: int
    image: np.ndarray
    found: FoundFaces | None


class _FrameLabeller:
    """The per-video state between batches: the tracker, and the labelled faces of the last
    processed frame, which skipped frames show. ``flush`` classifies a batch of frames' crops in
    one model call (``EmotionRecognizer.label``), adds their CSV rows and writes the annotated
    frames in order."""

    def __init__(self, result: VideoResult, recognizer: EmotionRecognizer, writer: AnnotatedVideoWriter | None,
                 tracker: IoUTracker) -> None:
        self.result, self.recognizer, self.writer, self.tracker = result, recognizer, writer, tracker
        self.shown: list[dict[str, Any]] = []

    def flush(self, frames: list[_Frame]) -> None:
        processed = [frame for frame in frames if frame.found is not None]
        labelled = iter(self.recognizer.label([frame.found for frame in processed]))
        for frame in frames:
            if frame.found is not None:
                self.shown = self._label(frame, next(labelled))
            if self.writer is not None:
                self._write(frame.image, self.shown)

    def _label(self, frame: _Frame, faces: list[Face]) -> list[dict[str, Any]]:
        result = self.result
        identity = {"file": result.file, "frame": frame.index, "time_s": round(frame.index / result.info.fps, 4)}
        result.frames_processed += 1
        if not faces:
            self.tracker.update([])  # a frame without faces counts as a miss for every open track
            result.rows.append(dict(identity))
            return []
        tracks = self.tracker.update([face.box for face in faces])
        # A frame's faces all come from the detector (no whole-image rule in a video): no box_source column.
        rows = [{**identity, "track_id": track, **{k: v for k, v in face.row().items() if k != "box_source"}}
                for track, face in zip(tracks, faces, strict=True)]
        result.rows.extend(rows)
        return rows

    def _write(self, frame_bgr: np.ndarray, faces: list[dict[str, Any]]) -> None:
        import cv2

        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        # annotate() writes "no face found" on a frame without faces: right for a photo, noise in a video.
        canvas = annotate(rgb, faces, max_side=None) if faces else rgb
        self.writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))


def _find_frame_faces(item: tuple[int, np.ndarray], finder: FaceFinder, every_n_frames: int) -> _Frame:
    """Worker: the faces of every ``every_n_frames``-th frame, found in the BGR frame as OpenCV
    reads it (``find_faces`` makes it grey once, for the crops and the Haar cascade; YuNet takes
    BGR itself); boxes in the frame's own pixels."""
    index, frame = item
    if index % every_n_frames:
        return _Frame(index, frame, None)
    return _Frame(index, frame, finder.find(frame, channels="bgr"))


def _truncation_error(path: Path, frames_read: int, frame_count: int) -> str | None:
    """The message for a stream that ended before the container's frame count (a cut or corrupt
    file), allowing 1% / 2 frames: some containers only estimate the count from the duration."""
    if frame_count <= 0 or frames_read >= frame_count - max(2, int(0.01 * frame_count)):
        return None
    return (f"{path}: video broke off at frame {frames_read} of {frame_count} (truncated or corrupt); "
            f"kept the {frames_read} frames read before it")


def predict_video(
    path: str | os.PathLike,
    recognizer: EmotionRecognizer,
    annotated_path: str | os.PathLike | None = None,
    every_n_frames: int = 1,
    batch_frames: int = 32,
    workers: int | None = None,
    progress: bool = True,
    tracker: IoUTracker | None = None,
) -> VideoResult:
    """Detect and classify the faces of every ``every_n_frames``-th frame of a video with
    ``recognizer`` (its detector, margin and classifier; no whole-image rule: a frame is never
    a face crop), track them (``IoUTracker``), and write an annotated copy to ``annotated_path``
    (``.mp4`` or ``.avi``; None: no video), where the frames in between show the last processed
    frame's boxes.

    The crops of ``batch_frames`` processed frames go through one ``recognizer.label`` call.
    ``UnreadableVideoError`` when the file cannot be opened or yields no frame. A stream that
    breaks off early is not raised: the frames before the break are kept (rows, annotated
    video) and ``result.error`` says at which frame it broke; it is logged as a warning too.
    """
    if every_n_frames < 1:
        raise ValueError(f"every_n_frames must be >= 1, got {every_n_frames}")
    path = Path(path)
    finder = recognizer.finder
    single_search = getattr(finder.detector, "single_search", None)  # YuNet's: no second search on frames
    finder = dataclasses.replace(finder, whole_image_max_side=0,
                                 detector=single_search() if single_search else finder.detector)
    capture, info = open_video(path)
    result = VideoResult(file=str(path), classes=recognizer.classes, info=info, every_n_frames=every_n_frames)
    writer = AnnotatedVideoWriter(annotated_path, info.fps) if annotated_path is not None else None
    labeller = _FrameLabeller(result, recognizer, writer, tracker or IoUTracker())
    start = time.perf_counter()
    try:
        _stream(capture, info, labeller, finder, every_n_frames, batch_frames, workers, progress)
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    finally:
        capture.release()
    result.seconds = time.perf_counter() - start
    if result.frames_read == 0:
        if writer is not None:
            writer.discard()
        raise UnreadableVideoError(f"{path}: not one frame could be decoded (corrupt, truncated, or an "
                                   "unsupported codec)")
    result.annotated = writer.close() if writer is not None else None
    result.error = _truncation_error(path, result.frames_read, info.frame_count)
    if result.error:
        log.warning("%s", result.error)
    return result


def _stream(capture, info: VideoInfo, labeller: _FrameLabeller, finder: FaceFinder, every_n_frames: int,
            batch_frames: int, workers: int | None, progress: bool) -> None:
    """Decode, detect (threads), and hand frames to ``labeller`` in batches of ``batch_frames``
    processed frames (at most ``batch_frames x (every_n_frames + 1)`` frames held at once)."""
    def find(item: tuple[int, np.ndarray]) -> _Frame:
        return _find_frame_faces(item, finder, every_n_frames)

    # Up to a batch of frames decoded and searched ahead: while this thread classifies one batch,
    # the workers prepare the next instead of idling.
    frames: Iterable[_Frame] = map_ordered(find, read_frames(capture), workers, ahead=batch_frames)
    if progress:
        try:
            from tqdm.auto import tqdm

            frames = tqdm(frames, total=info.frame_count or None, desc=f"video {Path(labeller.result.file).name}",
                          unit="frame")
        except ImportError:  # pragma: no cover
            pass
    batch: list[_Frame] = []
    processed = 0
    for frame in frames:
        labeller.result.frames_read += 1
        # A batch ends just before a processed frame, so skipped frames flush with the one they follow.
        if frame.found is not None and processed == batch_frames:
            labeller.flush(batch)
            batch, processed = [], 0
        batch.append(frame)
        processed += frame.found is not None
    if batch:
        labeller.flush(batch)


def write_video_csv(result: VideoResult, path: str | os.PathLike) -> Path:
    """``result.rows`` as CSV (``video_csv_columns``; floats to 6 decimals, empty cells off face
    rows), written to a temporary file and renamed: never half a file."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=video_csv_columns(result.classes), restval="")
        writer.writeheader()
        for row in result.rows:
            writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    return Path(path)


def video_table(results: Sequence[VideoResult], classes: Sequence[str] = CLASSES):  # -> pandas.DataFrame
    """All videos' rows as one DataFrame (``video_csv_columns``): nullable Int64 frame / track /
    box columns, float64 time, confidence, probabilities, score and landmarks (NaN off face rows
    and where the detector gave none)."""
    import pandas as pd

    classes = results[0].classes if results else tuple(classes)
    columns = video_csv_columns(classes)
    table = pd.DataFrame([row for result in results for row in result.rows], columns=columns)
    for column in ("frame", "track_id", "x", "y", "w", "h"):
        table[column] = pd.to_numeric(table[column]).astype("Int64")
    for column in ("time_s", "confidence", *[f"prob_{c}" for c in classes], *DETECTION_COLUMNS):
        table[column] = pd.to_numeric(table[column]).astype("float64")
    return table
