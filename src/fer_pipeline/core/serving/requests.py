"""Requests to the served model -> faces -> emotions: the work of the serving pipeline.

A request is a table, one row per input (what the MLflow scoring server makes of
``dataframe_records``, ``dataframe_split`` or ``inputs``), each row holding one of:

* ``image``: an encoded image file (JPEG, PNG, BMP, WebP, TIFF), as base64 text (JSON) or bytes
  (Python). A photo, whose faces the detector finds, or a small face crop, classified whole:
  exactly what ``fer-predict`` does with the same file (``core.faces.recognizer``: the request's
  ``FaceFinder``, then ``EmotionRecognizer.label``).
* ``pixels``: a ready 48x48 grey face, integers 0-255 (nested lists in JSON, or an array).

The answer is a table with one row per face (``input_index`` = the request row, its box, the
emotion, the seven probabilities, the detector's score and landmarks: None with Haar) and one
``status="no_face"`` row per input without a face.
A request with a bad input is refused as a whole (``ServingInputError``), naming every bad row
and what is wrong with it, before any face is classified.

Kedro-free and MLflow-free like the rest of ``core``; pandas is imported where it is needed.
"""

from __future__ import annotations

import base64
import binascii
import copy
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fer_pipeline.core.backends import check_backend, check_backend_options
from fer_pipeline.core.classes import CLASSES, IMAGE_SIZE
from fer_pipeline.core.config import from_params
from fer_pipeline.core.device import amp_mode
from fer_pipeline.core.faces.crops import WHOLE_IMAGE_MAX_SIDE, FoundFaces, landmark_points
from fer_pipeline.core.faces.detector import (
    DEFAULT_ALIGN,
    DEFAULT_DETECTOR,
    DETECT_MAX_SIDE,
    Detector,
    detector_options,
    make_detector,
)
from fer_pipeline.core.faces.images import MAX_PIXELS, ImageTooLargeError, UnreadableImageError, decode_image
from fer_pipeline.core.faces.recognizer import EmotionRecognizer, Face, FaceFinder
from fer_pipeline.core.inference import TTA_MODES

#: The request's columns; each row fills exactly one.
INPUT_COLUMNS: tuple[str, ...] = ("image", "pixels")
#: At most this many bad rows are spelt out in a refusal (the count says how many there were).
MAX_REPORTED_ERRORS = 10


class ServingInputError(ValueError):
    """The request cannot be answered as sent; the message names each bad row and its problem."""


@dataclass(frozen=True)
class ServingConfig:
    """``params:serving`` (conf/base/parameters_serving.yml): the same face finding as
    ``fer-predict`` (margin, whole-image rule, detector, detection scale, TTA, precision) and the limits
    of one request."""

    margin: float = 0.2
    tta: str = "none"
    backend: str = "torch"
    device: str = "auto"
    amp: str = "auto"
    detector: str = DEFAULT_DETECTOR
    detect_max_side: int | None = DETECT_MAX_SIDE
    detect_retry_max_side: int | None = None
    align: bool = DEFAULT_ALIGN
    min_score: float | None = None
    min_face: float | None = None
    whole_image_max_side: int = WHOLE_IMAGE_MAX_SIDE
    max_pixels: int = MAX_PIXELS
    max_inputs: int = 256
    batch_size: int = 256

    def __post_init__(self) -> None:
        import torch

        if self.tta not in TTA_MODES:
            raise ValueError(f"serving.tta must be one of {TTA_MODES}, got {self.tta!r}")
        if self.margin < 0:
            raise ValueError(f"serving.margin must be >= 0, got {self.margin}")
        if self.whole_image_max_side < 0:
            raise ValueError(f"serving.whole_image_max_side must be >= 0, got {self.whole_image_max_side}")
        object.__setattr__(self, "amp", amp_mode(self.amp))  # YAML's bare on/off arrive as booleans
        check_backend_options(check_backend(self.backend, "serving.backend"), self.device, self.amp, "serving.")
        self.detector_options()  # the detector's name first, then its options
        if not isinstance(self.align, bool):
            raise ValueError(f"serving.align must be true or false, got {self.align!r}")
        for name in ("max_pixels", "max_inputs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"serving.{name} must be >= 1, got {getattr(self, name)}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError as error:
                raise ValueError(f"serving.device must be auto, cpu, cuda, cuda:1, ..., got {self.device!r}") from error

    def detector_options(self) -> dict[str, Any]:
        """``make_detector``'s keyword arguments for this config's detector (checked)."""
        return detector_options(self.detector, self.min_score, self.min_face, "serving",
                                detect_max_side=self.detect_max_side, detect_retry_max_side=self.detect_retry_max_side)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ServingConfig:
        return from_params(cls, params, "serving")


@dataclass
class RequestFaces:
    """What ``find_request_faces`` found: the ``FoundFaces`` of each input, in request order."""

    found: list[FoundFaces]

    @property
    def num_inputs(self) -> int:
        return len(self.found)

    @property
    def rows(self) -> list[dict[str, Any]]:
        """One dict per face (``input_index``, face_index, box, box_source, ``DETECTION_COLUMNS``)."""
        return [row for index, faces in enumerate(self.found) for row in faces.rows(input_index=index)]

    @property
    def crops(self) -> np.ndarray:
        """The faces' crops (F, 48, 48) uint8, in the order of ``rows``."""
        crops = [faces.crops for faces in self.found if len(faces.boxes)]
        return np.concatenate(crops) if crops else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)

    @property
    def no_face(self) -> list[int]:
        """The inputs without a face."""
        return [index for index, faces in enumerate(self.found) if not faces.boxes]


# --------------------------------------------------------------------------------------------
# Request rows -> faces
# --------------------------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    """A cell the request left empty: None, NaN or pandas' NA (a row of a mixed request)."""
    import pandas as pd

    if isinstance(value, (list, tuple, np.ndarray, str, bytes, bytearray, memoryview)):
        return False  # a value, however malformed: the checks below name what is wrong with it
    return bool(pd.isna(value))


def _image_bytes(value: Any) -> bytes:
    """The file bytes of an ``image`` cell: raw bytes, or base64 text (whitespace and a
    ``data:image/...;base64,`` prefix allowed)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if not isinstance(value, str):
        raise ServingInputError(f"image must be base64 text of an image file, got {type(value).__name__}")
    text = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ServingInputError(f"image is not valid base64 ({error})") from error


def crop_from_pixels(value: Any) -> np.ndarray:
    """A ``pixels`` cell -> (48, 48) uint8, or ``ServingInputError`` naming what is wrong."""
    try:
        array = np.asarray(value)
    except ValueError as error:  # ragged nested lists
        raise ServingInputError(f"pixels must be a {IMAGE_SIZE}x{IMAGE_SIZE} array, got ragged lists") from error
    if array.dtype == object:
        raise ServingInputError(f"pixels must be a {IMAGE_SIZE}x{IMAGE_SIZE} array of numbers, got ragged or "
                                "non-numeric values")
    if array.shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise ServingInputError(f"pixels must be a {IMAGE_SIZE}x{IMAGE_SIZE} grey face, got shape {array.shape}"
                                + ("" if array.ndim != 3 else " (one grey channel, no colour axis)"))
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ServingInputError(f"pixels must be numbers 0-255, got {array.dtype}")
    if not np.isfinite(array).all():
        raise ServingInputError("pixels must be numbers 0-255, got NaN or infinity")
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 255:
        raise ServingInputError(f"pixels must be 0-255, got values from {low:g} to {high:g}")
    if np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.round(array)):
        hint = ": multiply them by 255" if high <= 1.0 else ""
        raise ServingInputError(f"pixels must be whole numbers 0-255, got fractions from {low:g} to {high:g}{hint}")
    return array.astype(np.uint8)


def _faces_of_row(row: Mapping[str, Any], config: ServingConfig, finder: FaceFinder) -> FoundFaces:
    image, pixels = row.get("image"), row.get("pixels")
    has_image, has_pixels = not _missing(image), not _missing(pixels)
    if has_image and has_pixels:
        raise ServingInputError("give either image or pixels, not both")
    if has_pixels:
        crop = crop_from_pixels(pixels)
        return FoundFaces([(0, 0, IMAGE_SIZE, IMAGE_SIZE)], "crop", crop[None])
    if not has_image:
        raise ServingInputError("no image and no pixels")
    try:
        decoded = decode_image(_image_bytes(image), max_pixels=config.max_pixels)
    except ImageTooLargeError as error:
        raise ServingInputError(f"{error} (serving.max_pixels)") from error
    except UnreadableImageError as error:
        raise ServingInputError(str(error)) from error
    return finder.find(decoded)


def request_rows(requests: Any) -> list[dict[str, Any]]:
    """The request (a DataFrame, or a list of row dicts) as row dicts holding only
    ``INPUT_COLUMNS``; refuses a request with no rows or with neither column."""
    import pandas as pd

    if isinstance(requests, list):
        requests = pd.DataFrame(requests)
    if not isinstance(requests, pd.DataFrame):
        raise ServingInputError(f"the request must be a table of inputs, got {type(requests).__name__}")
    columns = [c for c in INPUT_COLUMNS if c in requests.columns]
    example = '{"dataframe_records": [{"image": "<base64 of a JPEG or PNG>"}, {"pixels": [[0, ...], ...]}]}'
    if not columns:
        # MLflow has already dropped the columns its signature does not name, which leaves an
        # empty table for {"photo": ...} as for {"dataframe_records": []}: one message for both.
        raise ServingInputError("the request has no image and no pixels column (or no inputs at all); "
                                f"send for example {example}")
    if len(requests) == 0:
        raise ServingInputError(f"the request has no inputs; send for example {example}")
    values = {c: requests[c].tolist() for c in columns}
    return [{c: values[c][i] for c in columns} for i in range(len(requests))]


def request_json(inputs: Sequence[bytes | np.ndarray]) -> bytes:
    """The scoring server's JSON body for ``inputs``, one row each: the bytes of an image file
    (sent base64 as ``image``) or a 48x48 face array (sent as ``pixels``): what a client sends."""
    import json

    records = [{"image": base64.b64encode(item).decode("ascii")} if isinstance(item, (bytes, bytearray))
               else {"pixels": np.asarray(item).tolist()} for item in inputs]
    return json.dumps({"dataframe_records": records}).encode("utf-8")


# One detector per (kind, detection scale, least score, smallest face), shared by the scoring server's request threads: each
# detector keeps one cascade / network per thread itself. Made under a lock: threads importing cv2
# together found it half-initialised ("module 'cv2' has no attribute 'data'", seen in the
# concurrency test).
_detectors: dict[tuple, Detector] = {}
_detectors_lock = threading.Lock()


def shared_detector(config: ServingConfig) -> Detector:
    """The detector of ``config``'s settings, one per distinct settings for all request threads."""
    options = config.detector_options()
    key = (config.detector, *sorted(options.items()))
    with _detectors_lock:
        if key not in _detectors:
            _detectors[key] = make_detector(config.detector, **options)
        return _detectors[key]


def face_finder(config: ServingConfig, detector: Detector | None = None) -> FaceFinder:
    """The face finding of ``params:serving``, with ``detector`` or the shared one of its kind and scale."""
    detector = detector or shared_detector(config)
    return FaceFinder(detector, margin=config.margin,
                      whole_image_max_side=config.whole_image_max_side, align=config.align)


def find_request_faces(requests: Any, config: ServingConfig, detector: Detector | None = None) -> RequestFaces:
    """Decode every input of the request and find its faces (``face_finder`` for an image, the
    given crop for pixels). Raises ``ServingInputError`` for a request with bad rows, naming
    each (up to ``MAX_REPORTED_ERRORS``), or more than ``config.max_inputs`` rows."""
    rows = request_rows(requests)
    if len(rows) > config.max_inputs:
        raise ServingInputError(f"the request has {len(rows)} inputs, over the limit of {config.max_inputs} "
                                "(serving.max_inputs): send them in several requests")
    finder = face_finder(config, detector)
    found: list[FoundFaces] = []
    errors: list[str] = []
    for index, row in enumerate(rows):
        try:
            found.append(_faces_of_row(row, config, finder))
        except ServingInputError as error:
            errors.append(f"row {index}: {error}")
    if errors:
        shown = "; ".join(errors[:MAX_REPORTED_ERRORS])
        more = f"; and {len(errors) - MAX_REPORTED_ERRORS} more" if len(errors) > MAX_REPORTED_ERRORS else ""
        raise ServingInputError(f"{len(errors)} of {len(rows)} inputs refused: {shown}{more}")
    return RequestFaces(found)


# --------------------------------------------------------------------------------------------
# Faces -> the answer
# --------------------------------------------------------------------------------------------


def output_columns(classes: Sequence[str] = CLASSES) -> list[str]:
    return ["input_index", "status", "face_index", "x", "y", "w", "h", "box_source", "emotion", "confidence",
            *[f"prob_{c}" for c in classes], "score", "landmarks"]


def answer_table(faces: Sequence[Sequence[Face]], classes: Sequence[str]):  # -> pandas.DataFrame
    """One row per face and one ``no_face`` row per input without a face, in request order
    (``faces``: each input's). A face's ``score`` is the detector's and its ``landmarks``
    {name: [x, y]} in the image's pixels (``crops.landmark_points``), both None with Haar. Object
    columns, with None (JSON null) where a row has no value: a float column would carry NaN,
    which is not JSON."""
    import pandas as pd

    columns = output_columns(classes)
    rows = []
    for index, found in enumerate(faces):
        rows += [_face_row(index, face_index, face) for face_index, face in enumerate(found)] or [
            {"input_index": index, "status": "no_face"}]
    records = [[row.get(column) for column in columns] for row in rows]
    return pd.DataFrame(records, columns=columns, dtype=object)  # dtype=object keeps None and ints as they are


def _face_row(input_index: int, face_index: int, face: Face) -> dict[str, Any]:
    row = {"input_index": input_index, "status": "face", "face_index": face_index, **face.row()}
    return {**row, "landmarks": landmark_points(row)}


def classify_request_faces(found: RequestFaces, model_path: str | os.PathLike, config: ServingConfig):
    """The answer (``answer_table``) for the faces of a request, classified by the model file at
    ``model_path`` (loaded once per process, ``cached_model``) with ``EmotionRecognizer.label``."""
    served = cached_model(model_path, config.device, config.backend)
    recognizer = EmotionRecognizer(served.model, served.config, finder=face_finder(config), tta=config.tta,
                                   device=config.device, amp=config.amp, batch_size=config.batch_size)
    # One forward pass at a time per model, whichever request's recognizer runs it:
    # ``predict_logits`` sets the module's mode and memory format on each call, and two threads
    # converting one module at once crashed torch (SIGSEGV in Module._apply, before
    # ``cached_model`` converted it up front). Torch spreads each pass over the cores itself;
    # decoding and face detection, before this, still run in parallel. Measured with
    # benchmarks/bench_serving.py (8 clients, 600 requests): 27.7 requests/s with the lock,
    # 29.4 without, within the machine's noise.
    with served.lock:
        faces = recognizer.label(found.found)
    return answer_table(faces, recognizer.classes)


# --------------------------------------------------------------------------------------------
# The model, loaded once per process
# --------------------------------------------------------------------------------------------


@dataclass
class ServedModel:
    """A loaded model ready for inference, its config, and the lock its forward passes take."""

    model: Any
    config: dict
    lock: threading.Lock = field(default_factory=threading.Lock)


_models: dict[tuple, ServedModel] = {}
_refused: dict[tuple, Exception] = {}  # a file version the back-end could not take, and why (no traceback)
_models_lock = threading.Lock()


def cached_model(path: str | os.PathLike, device: str = "auto", backend: str = "torch") -> ServedModel:
    """``core.models.load_model(path)`` in eval mode on ``device`` in channels_last (as
    ``predict_logits`` runs it), loaded once per process and file version (path, size,
    modification time): a server answers every request with the same weights without reading
    the file each time. Keeps the newest model only. ``backend`` onnxruntime: the model converted
    to ONNX once, when it loads, and checked against PyTorch (``core.onnx_export``); a conversion
    that fails is not tried again for the same file version: each request gets its error at once."""
    import torch

    from fer_pipeline.core.device import resolve_device
    from fer_pipeline.core.models import load_model

    path = Path(path).resolve()
    stat = path.stat()
    device = resolve_device("cpu" if backend == "onnxruntime" else device)  # ONNX Runtime runs on the CPU
    key = (str(path), stat.st_size, stat.st_mtime_ns, str(device), backend)
    with _models_lock:
        if key in _refused:
            raise copy.copy(_refused[key])  # a request's own error object: no traceback shared between threads
        if key not in _models:
            model, model_config = load_model(path, map_location=device)  # in eval mode
            model.to(memory_format=torch.channels_last)
            if backend == "onnxruntime":
                from fer_pipeline.core.onnx_export import onnx_model_from_module

                try:
                    model = onnx_model_from_module(model, model_config, source=str(path))
                except MemoryError:  # may pass: tried again on the next request
                    raise
                except Exception as error:  # a conversion takes seconds: a refused one is not redone per request
                    _refused.clear()
                    _refused[key] = copy.copy(error)  # without this failure's frames (the model, the session)
                    raise
            _models.clear()
            _models[key] = ServedModel(model, model_config)
        return _models[key]
