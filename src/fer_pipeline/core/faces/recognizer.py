"""``EmotionRecognizer``: an image -> its faces -> their emotions, the one implementation behind
``fer-predict`` (photos and videos), the predict stage, the served model and the external photo sets.

    from fer_pipeline import EmotionRecognizer
    rec = EmotionRecognizer.load("data/06_models/resnet34.pt")   # or EmotionRecognizer.from_mlflow(run_id)
    rec = EmotionRecognizer.load("data/06_models/resnet34.onnx") # the same with ONNX Runtime (core.backends)
    faces = rec.predict("photo.jpg")      # a path, the bytes of an image file, or an RGB/BGR/grey array
    faces[0].emotion, faces[0].probabilities, faces[0].box, faces[0].landmarks
    rec.classify_crops(crops)             # (N, 48, 48) uint8 grey faces -> (N, K) probabilities

Two parts, so that a caller that finds faces without a model (serving's first node) shares the
face finding: ``FaceFinder`` (the detector and the options of ``crops.find_faces``, kept together
so that a new one passes through every entry point) and the classifier (model, config, TTA,
device, precision: ``classify.classify_crops``). The classifier runs with PyTorch (an ``nn.Module``)
or ONNX Runtime (a ``core.onnx_model.OnnxModel``): ``backend``, ``core.backends``.
"""

from __future__ import annotations

import inspect
import numbers
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fer_pipeline.core.backends import check_backend_options
from fer_pipeline.core.classes import CLASSES, IMAGE_SIZE
from fer_pipeline.core.faces.classify import classify_crops
from fer_pipeline.core.faces.crops import WHOLE_IMAGE_MAX_SIDE, FoundFaces, detection_fields, find_faces
from fer_pipeline.core.faces.detector import (
    DEFAULT_ALIGN,
    DEFAULT_DETECTOR,
    DETECT_MAX_SIDE,
    LANDMARKS,
    Detector,
    detector_options,
    make_detector,
)
from fer_pipeline.core.faces.images import MAX_PIXELS, UnreadableImageError, check_channels, decode_image, load_image
from fer_pipeline.core.onnx_model import OnnxModel


@dataclass(frozen=True)
class Face:
    """One face of an image and its emotion.

    ``box`` (x, y, w, h) in the image's pixels; ``box_source``: how it was found (``detector``;
    ``whole_image``: a small image, taken to be a face crop already; ``crop``:
    given as a 48x48 face); ``score``: the detector's confidence and ``landmarks`` {name: (x, y)}
    in the image's pixels (``detector.LANDMARKS``), both None where the detector gives none
    (Haar, a whole image, a crop). ``emotion``: the most probable class, ``confidence`` its
    probability, ``probabilities`` {class: p} in the model's class order.
    """

    emotion: str
    confidence: float
    probabilities: dict[str, float]
    box: tuple[int, int, int, int]
    box_source: str
    score: float | None = None
    landmarks: dict[str, tuple[float, float]] | None = None

    def row(self) -> dict[str, Any]:
        """The face's columns in fer-predict's CSVs and the served answer: x, y, w, h, box_source,
        emotion, confidence, prob_<class>..., then ``crops.DETECTION_COLUMNS`` (None where the
        detector gave none)."""
        x, y, w, h = self.box
        points = tuple(self.landmarks.values()) if self.landmarks else None
        return {"x": x, "y": y, "w": w, "h": h, "box_source": self.box_source, "emotion": self.emotion,
                "confidence": self.confidence, **{f"prob_{name}": p for name, p in self.probabilities.items()},
                **detection_fields(self.score, points)}


def labelled_faces(found: FoundFaces, probabilities: np.ndarray, classes: Sequence[str]) -> list[Face]:
    """The ``Face`` of each box of ``found``, face i classified by ``probabilities[i]`` (float64 rows)."""
    faces = []
    for index, (box, probs) in enumerate(zip(found.boxes, probabilities, strict=True)):
        detection = found.detections[index] if index < len(found.detections) else None
        best = int(probs.argmax())
        faces.append(Face(
            emotion=classes[best], confidence=float(probs[best]),
            probabilities={name: float(p) for name, p in zip(classes, probs, strict=True)},
            box=tuple(int(v) for v in box), box_source=found.box_source,
            score=None if detection is None else detection.score,
            landmarks=dict(zip(LANDMARKS, detection.landmarks, strict=True)) if detection and detection.landmarks
            else None,
        ))
    return faces


def label_found(found: Sequence[FoundFaces], probabilities: np.ndarray | None,
                classes: Sequence[str]) -> list[list[Face]]:
    """Each image's ``Face``s: ``found`` (one per image) with the rows of ``probabilities`` (one
    per face, all images' in order; None when there is no face at all) that classify them."""
    labelled, offset = [], 0
    for faces in found:
        count = len(faces.boxes)
        labelled.append(labelled_faces(faces, probabilities[offset:offset + count], classes) if count else [])
        offset += count
    return labelled


@dataclass(frozen=True)
class FaceFinder:
    """How faces are found and cropped (``crops.find_faces``): the detector, the context
    ``margin`` around each box, the whole-image rule (an image up to ``whole_image_max_side`` px
    is taken to be a face crop already; 0 disables it), and ``align`` (faces
    with landmarks, YuNet's, levelled and framed like FER2013, ``align.py``). Thread-safe: the
    detectors keep one cascade / network per thread."""

    detector: Detector
    margin: float = 0.2
    whole_image_max_side: int = WHOLE_IMAGE_MAX_SIDE
    align: bool = DEFAULT_ALIGN

    def __post_init__(self) -> None:
        if not callable(getattr(self.detector, "detect_faces", None)):
            raise TypeError(f"detector must be one of 'haar', 'yunet' or a Detector (with detect_faces), "
                            f"got {type(self.detector).__name__}")
        if isinstance(self.margin, bool) or not isinstance(self.margin, numbers.Real) or not self.margin >= 0:
            raise ValueError(f"margin must be a number >= 0 (a fraction of the face's side), got {self.margin!r}")
        side = self.whole_image_max_side
        if isinstance(side, bool) or not isinstance(side, numbers.Integral) or side < 0:
            raise ValueError(f"whole_image_max_side must be a whole number of pixels >= 0 (0: off), got {side!r}")
        if not isinstance(self.align, bool):
            raise ValueError(f"align must be True or False, got {self.align!r}")

    @classmethod
    def make(cls, detector: str | Detector = DEFAULT_DETECTOR, detect_max_side: int | None = DETECT_MAX_SIDE,
             margin: float = 0.2, whole_image_max_side: int = WHOLE_IMAGE_MAX_SIDE,
             align: bool = DEFAULT_ALIGN, min_score: float | None = None,
             min_face: float | None = None, detect_retry_max_side: int | None = None) -> FaceFinder:
        """A finder with the detector named ``detector`` (``haar`` | ``yunet``, searching a copy at
        most ``detect_max_side`` px long, 0 or None: full resolution; YuNet searching again at most
        ``detect_retry_max_side`` px long where that finds no face, None: its default, 0: never;
        keeping faces that score ``min_score`` and measure ``min_face`` of the shorter side, None:
        its defaults; ``detector.detector_options``), or ``detector`` itself when it is a
        ``Detector`` (these are then its own)."""
        if isinstance(detector, str):
            detector = make_detector(detector, **detector_options(
                detector, min_score, min_face, detect_max_side=detect_max_side,
                detect_retry_max_side=detect_retry_max_side))
        elif min_score is not None or min_face is not None or detect_retry_max_side is not None:
            raise TypeError("min_score, min_face and detect_retry_max_side set a detector named by kind ('yunet', "
                            "'haar'); a Detector object keeps its own")
        return cls(detector, margin=margin, whole_image_max_side=whole_image_max_side, align=align)

    def find(self, image: np.ndarray, channels: str = "rgb") -> FoundFaces:
        """The faces of a colour (H, W, 3) uint8 image in ``channels`` order (``rgb`` | ``bgr``) or
        a grey (H, W) one, cropped (``find_faces``)."""
        return find_faces(image, self.detector, margin=self.margin, whole_image_max_side=self.whole_image_max_side,
                          align=self.align, channels=channels)


#: The face-finding options ``EmotionRecognizer`` passes to ``FaceFinder.make``.
FACE_OPTIONS: tuple[str, ...] = tuple(inspect.signature(FaceFinder.make).parameters)


class EmotionRecognizer:
    """Faces and their emotions in images, with a trained classifier (``core.models``).

    ``EmotionRecognizer(model, config, ...)``, ``load(path, ...)`` or ``from_mlflow(run_id, ...)``;
    ``model`` an ``nn.Module`` (the torch back-end) or an ``OnnxModel`` (onnxruntime: float32 on
    the CPU, so ``device`` must be auto or cpu and ``amp`` auto or off).
    Options, defaults as ``fer-predict``'s: the face finding (``FaceFinder.make``): ``detector``
    (``haar`` | ``yunet`` | a ``Detector``), ``detect_max_side``, ``margin``,
    ``whole_image_max_side``, ``align`` (or ``finder``, a ready ``FaceFinder``); the classifier: ``tta``
    (``none`` | ``flip`` | ``ten_crop``), ``device`` (``auto``: CUDA when available), ``amp``
    (``auto`` | ``on`` | ``off``: bf16 autocast), ``batch_size``. Thread-safe: one forward pass
    at a time.
    """

    def __init__(self, model: nn.Module | OnnxModel, config: dict, *, finder: FaceFinder | None = None,
                 tta: str = "none", device: str | torch.device | None = "auto", amp: bool | str = "auto",
                 batch_size: int = 256, **face_options: Any) -> None:
        from fer_pipeline.core.config import reject_unknown_keys
        from fer_pipeline.core.device import amp_mode, resolve_device
        from fer_pipeline.core.inference import TTA_MODES

        reject_unknown_keys(face_options, FACE_OPTIONS, "EmotionRecognizer")
        if finder is not None and face_options:
            raise TypeError(f"give either finder or face options ({', '.join(face_options)}), not both")
        if tta not in TTA_MODES:
            raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {tta!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        self.backend = "onnxruntime" if isinstance(model, OnnxModel) else "torch"
        self.amp = amp_mode(amp)
        check_backend_options(self.backend, device, self.amp)
        if self.backend == "onnxruntime":
            device, self.amp = "cpu", "off"
        try:
            self.device = resolve_device(device)
        except RuntimeError as error:
            raise ValueError(f"device must be auto, cpu, cuda, cuda:1, ..., got {device!r}") from error
        self.model, self.config = model, dict(config)
        self.classes: tuple[str, ...] = tuple(self.config.get("classes", CLASSES))
        self.tta, self.batch_size = tta, batch_size
        self.finder = finder or FaceFinder.make(**face_options)
        # predict_logits sets the module's mode and memory format on each call; two threads doing
        # that to one module at once crashed torch (core.serving.requests).
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        finder = self.finder
        return (f"EmotionRecognizer(classes={list(self.classes)}, detector={type(finder.detector).__name__}, "
                f"margin={finder.margin}, whole_image_max_side={finder.whole_image_max_side}, align={finder.align}, "
                f"tta={self.tta!r}, backend={self.backend!r}, "
                f"device={str(self.device)!r}, amp={self.amp!r})")

    @classmethod
    def load(cls, path: str | os.PathLike, backend: str | None = None, **options: Any) -> EmotionRecognizer:
        """The recognizer of the model file at ``path``: a ``.pt`` (``core.models.load_model``) or
        an ``.onnx`` (``core.onnx_model.load_onnx_model``); a ``ModelFileError`` for a file that is
        not one, ``FileNotFoundError`` for none. ``backend`` (``core.backends.backend_for``): None,
        the file's own (``.onnx``: onnxruntime, ``.pt``: torch); ``onnxruntime`` with a ``.pt``
        converts it in memory, checked against PyTorch (``core.onnx_export.onnx_model_from_module``)."""
        from fer_pipeline.core.backends import backend_for, is_onnx_file
        from fer_pipeline.core.model_files import CLASSIFIER_ORIGIN
        from fer_pipeline.core.models import load_model

        backend = backend_for(path, backend)
        if is_onnx_file(path):
            from fer_pipeline.core.onnx_model import load_onnx_model

            onnx_model = load_onnx_model(path)
            return cls(onnx_model, onnx_model.config, **options)
        if not Path(path).exists():
            raise FileNotFoundError(f"model file not found: {path} ({CLASSIFIER_ORIGIN})")
        model, config = load_model(path, map_location="cpu")
        if backend == "onnxruntime":
            from fer_pipeline.core.onnx_export import onnx_model_from_module

            return cls(onnx_model_from_module(model, config, source=str(path)), config, **options)
        return cls(model, config, **options)

    @classmethod
    def from_mlflow(cls, run_id: str, tracking_uri: str | None = None, backend: str = "torch",
                    **options: Any) -> EmotionRecognizer:
        """The recognizer of the model file MLflow run ``run_id`` logged, where training logs it
        (``core.model_files.download_run_model``; ``tracking_uri`` None: MLflow's current store,
        ``MLFLOW_TRACKING_URI`` or the ``mlflow.db`` of the working directory, the project's
        from its root). ``backend`` ``onnxruntime``: the run's ONNX file where it logged one, else its
        ``.pt`` converted in memory. ``ModelFileError`` for an unknown run or one without a model file."""
        import tempfile

        from fer_pipeline.core.backends import check_backend
        from fer_pipeline.core.model_files import download_run_model

        suffixes = (".onnx", ".pt") if check_backend(backend) == "onnxruntime" else (".pt",)
        with tempfile.TemporaryDirectory(prefix="fer_model_") as folder:
            return cls.load(download_run_model(run_id, folder, tracking_uri, suffixes), backend=backend, **options)

    # ---------------------------------------------------------------------------------- faces

    def find_faces(self, image: Any, channels: str = "rgb") -> FoundFaces:
        """The faces of one image (``as_image``: a path, bytes or an array), found and cropped,
        not yet classified (``label`` does that, many images in one model call)."""
        return self.finder.find(*as_image(image, channels))

    def label(self, found: Sequence[FoundFaces]) -> list[list[Face]]:
        """The ``Face``s of each image's ``found`` faces, all classified in one batched call."""
        crops = [faces.crops for faces in found if len(faces.boxes)]
        return label_found(found, self._probabilities(np.concatenate(crops)) if crops else None, self.classes)

    def predict(self, image: Any, channels: str = "rgb") -> list[Face]:
        """The faces of ``image`` with their emotions, left to right ([] when it has none).

        ``image``: a file path, the bytes of an image file (JPEG, PNG, BMP, WebP, TIFF; decoded to
        RGB), or a uint8 numpy array: grey (H, W) or (H, W, 1), or colour (H, W, 3) in the
        ``channels`` order, ``rgb`` (PIL, matplotlib) or ``bgr`` (OpenCV's ``cv2.imread``).
        """
        return self.predict_many([image], channels)[0]

    def predict_many(self, images: Sequence[Any], channels: str = "rgb") -> list[list[Face]]:
        """``predict`` for many images, their faces classified in one batched call."""
        return self.label([self.find_faces(image, channels) for image in images])

    # ---------------------------------------------------------------------------------- crops

    def classify_crops(self, crops: Any) -> np.ndarray:
        """Class probabilities of ready face crops: (N, 48, 48) uint8 grey faces -> (N, K) float64
        (rows sum to 1, columns in ``classes`` order); one (48, 48) face -> (K,). Crops are taken
        as they are, without face detection: FER2013-like, the face filling the square."""
        array = np.asarray(crops)
        if array.dtype != np.uint8:
            raise TypeError(f"crops must be uint8 grey faces (0-255), got {array.dtype}: convert with "
                            "np.clip(crops, 0, 255).astype(np.uint8)")
        single = array.ndim == 2
        batch = array[None] if single else array
        if batch.ndim != 3 or batch.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"crops must be (N, {IMAGE_SIZE}, {IMAGE_SIZE}) grey faces or one "
                             f"({IMAGE_SIZE}, {IMAGE_SIZE}), got shape {array.shape}: make colour faces grey and "
                             f"resize them to {IMAGE_SIZE}x{IMAGE_SIZE} first")
        probabilities = self._probabilities(batch)
        return probabilities[0] if single else probabilities

    def _probabilities(self, crops: np.ndarray) -> np.ndarray:
        """(N, K) float64 class probabilities of (N, 48, 48) uint8 crops, one model call."""
        if not len(crops):
            return np.zeros((0, len(self.classes)), dtype=np.float64)
        with self._lock:
            return classify_crops(self.model, crops, self.config, tta=self.tta, device=self.device,
                                  batch_size=self.batch_size, amp=self.amp)


def as_image(image: Any, channels: str = "rgb") -> tuple[np.ndarray, str]:
    """What ``find_faces`` takes, a uint8 image and its colour order: from a file path (decoded,
    ``images.load_image``) or the bytes of an image file (``images.decode_image``), RGB; from a
    uint8 array, grey (H, W) or (H, W, 1), or (H, W, 3) in the ``channels`` order (``rgb`` |
    ``bgr``), as it is. Files and bytes over ``images.MAX_PIXELS`` are refused
    (``ImageTooLargeError``) before decoding."""
    check_channels(channels)
    if isinstance(image, (str, os.PathLike)):
        if not Path(image).is_file():
            raise FileNotFoundError(f"no such image file: {image}")
        try:
            return load_image(image, max_pixels=MAX_PIXELS), "rgb"
        except UnreadableImageError as error:
            raise type(error)(f"{image}: {error}") from error
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image(bytes(image), max_pixels=MAX_PIXELS), "rgb"
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a file path, the bytes of an image file or a numpy array, got "
                        f"{type(image).__name__} (a PIL image: np.asarray(image.convert('RGB')))")
    return _array_image(image), channels


def _array_image(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        raise TypeError(f"an image array must be uint8 (0-255), got {image.dtype}: convert with "
                        "np.clip(image, 0, 255).astype(np.uint8) (times 255 first for values 0-1)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)) or 0 in image.shape:
        hint = ": drop the alpha channel, image[..., :3]" if image.ndim == 3 and image.shape[2] == 4 else ""
        raise ValueError(f"an image array must be grey (H, W) or colour (H, W, 3), got shape {image.shape}{hint}")
    return np.ascontiguousarray(image)  # OpenCV refuses views with negative strides (image[..., ::-1])
