"""File bytes -> uint8 grayscale faces: format sniffing, the truncation check, decoding.

OpenCV decodes when it is installed (its decoder releases the GIL, so threads decode in
parallel); where it is missing (e.g. a bare GPU box) Pillow decodes, converts and resizes.
``sniff_format``, ``truncation`` and ``imdecode`` (the one OpenCV decode of the project) also
serve the photo path, ``core.faces.images.decode_image``; ``FORMAT_EXTENSIONS`` and
``imdecode_formats`` tell its folder scan which files are images (``core.predict.inputs``).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fer_pipeline.core.ingestion.progress import progress_bar
from fer_pipeline.core.ingestion.result import IngestionError
from fer_pipeline.core.ingestion.sources import Item

# Items per thread-pool task: one future per file costs more than decoding a 48x48 JPEG.
_CHUNK = 256


def sniff_format(data: bytes) -> str | None:
    """The image format named by the leading bytes ("jpeg", "png", "gif", "bmp", "webp",
    "tiff", "pnm"), or None when they name none of these."""
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


#: The file extensions (lower case) of each format ``sniff_format`` names: the one list of image
#: extensions of the project (``core.predict.inputs`` finds photos in folders by them).
FORMAT_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "jpeg": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "png": (".png",),
    "gif": (".gif",),
    "bmp": (".bmp", ".dib"),
    "webp": (".webp",),
    "tiff": (".tif", ".tiff"),
    "pnm": (".pbm", ".pgm", ".ppm", ".pnm"),
}

#: A 1x1 GIF: OpenCV reads GIF from 4.11 on (``imdecode_formats`` tries it); every opencv-python
#: wheel reads the other formats of ``FORMAT_EXTENSIONS``.
_GIF_PROBE = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
              b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


@functools.cache
def imdecode_formats() -> tuple[str, ...]:
    """The formats of ``FORMAT_EXTENSIONS`` that ``imdecode`` reads with the installed OpenCV
    (GIF only where it decodes a sample); all of them where OpenCV is missing (Pillow decodes)."""
    if opencv() is None:
        return tuple(FORMAT_EXTENSIONS)
    return tuple(fmt for fmt in FORMAT_EXTENSIONS if fmt != "gif" or imdecode(_GIF_PROBE) is not None)


def truncation(data: bytes, fmt: str | None) -> str | None:
    """``"truncated_image: ..."`` when JPEG or PNG bytes look cut short, else None.

    Checked before decoding, because decoders may fill the missing part with grey.
    """
    if fmt == "jpeg":
        # The last scan (SOS, FFDA) must be followed by the end-of-image marker (FFD9); entropy
        # coded data never contains FFD9 (FF is stuffed), an EXIF thumbnail precedes the scan.
        if data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
            return "truncated_image: JPEG data ends before its end-of-image marker"
    elif fmt == "png" and data.rfind(b"IEND", 8) < 0:
        return "truncated_image: PNG data ends before its IEND chunk"
    return None


def opencv():
    """The ``cv2`` module when OpenCV is installed, else None (Pillow then does the work)."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


#: ``imdecode``'s modes: ``stored``, channels and depth as stored (1-channel stays 1-channel,
#: 16-bit stays 16-bit: ingestion tells grey from colour); ``bgr``, 3-channel BGR uint8 (grey
#: expanded, 16-bit reduced, EXIF orientation applied: photos); ``unchanged``, as stored with the
#: alpha channel (photos' transparency).
IMDECODE_MODES: tuple[str, ...] = ("stored", "bgr", "unchanged")


def imdecode(data: bytes, mode: str = "stored") -> np.ndarray | None:
    """Encoded image bytes -> pixels by OpenCV's decoder, read as ``mode`` (``IMDECODE_MODES``).

    None when OpenCV is not installed or cannot decode the bytes (the callers decide: ingestion
    falls back to Pillow, photos are unreadable); a ``cv2.error`` from the decoder propagates.
    """
    if mode not in IMDECODE_MODES:
        raise ValueError(f"imdecode mode must be one of {', '.join(IMDECODE_MODES)}, got {mode!r}")
    cv2 = opencv()
    if cv2 is None:
        return None
    flags = {
        "stored": cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH,
        "bgr": cv2.IMREAD_COLOR,
        "unchanged": cv2.IMREAD_UNCHANGED,
    }[mode]
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    return None if pixels is None or pixels.size == 0 else pixels


def decoder_name() -> str:
    """Which library decodes: ``"opencv <version>"`` (e.g. "opencv 4.10.0") or ``"pillow"``."""
    cv2 = opencv()
    return f"opencv {cv2.__version__}" if cv2 is not None else "pillow"


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


def _bgr_to_grey(bgr: np.ndarray) -> np.ndarray:
    cv2 = opencv()
    if cv2 is not None:
        return cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2GRAY)
    # OpenCV's weights (ITU-R BT.601), rounded the same way
    grey = bgr[..., 0] * 0.114 + bgr[..., 1] * 0.587 + bgr[..., 2] * 0.299
    return np.clip(grey + 0.5, 0, 255).astype(np.uint8)


def resize_area(pixels: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 (H, W) -> (image_size, image_size) by area interpolation (Pillow: box filter)."""
    cv2 = opencv()
    if cv2 is not None:
        return cv2.resize(pixels, (image_size, image_size), interpolation=cv2.INTER_AREA)
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).resize((image_size, image_size), Image.Resampling.BOX))


def _to_grey(pixels: np.ndarray, colour: str) -> tuple[np.ndarray | None, str | None]:
    """Channels -> one channel: grey stored in colour is taken as is, colour converted or rejected."""
    if pixels.ndim != 3:
        return pixels, None
    if pixels.shape[2] == 1:
        return pixels[..., 0], None
    bgr = pixels[..., :3]
    if (bgr[..., 0] == bgr[..., 1]).all() and (bgr[..., 1] == bgr[..., 2]).all():
        return bgr[..., 0], None  # grey stored in a colour container: nothing to convert
    if colour == "reject":
        return None, f"colour_image: {pixels.shape[2]}-channel colour image and colour='reject'"
    return _bgr_to_grey(bgr), None


def decode_face(data: bytes, colour: str, size: str, image_size: int) -> tuple[np.ndarray | None, str | None]:
    """File bytes -> uint8 (S,S) grayscale face, as ingestion makes each face of a dataset, or
    (None, reason). ``colour`` and ``size``: ``convert`` or ``reject``."""
    if not data:
        return None, "empty_file: file is empty (0 bytes)"
    fmt = sniff_format(data)
    problem = truncation(data, fmt)
    if problem:
        return None, problem
    # "stored" keeps 1-channel files 1-channel (so colour can be told apart) and 16 bit 16 bit.
    pixels = imdecode(data, "stored")
    if pixels is None:
        pixels, problem = _decode_pil(data, fmt)
        if pixels is None:
            return None, problem
    pixels = _to_uint8(pixels)
    if pixels is None:
        return None, "unsupported_pixel_format: pixel type is neither 8/16-bit integer nor float"
    pixels, problem = _to_grey(pixels, colour)
    if pixels is None:
        return None, problem
    height, width = pixels.shape[:2]
    if (height, width) != (image_size, image_size):
        if size == "reject":
            return None, f"wrong_size: {width}x{height} image, expected {image_size}x{image_size} and size='reject'"
        pixels = resize_area(pixels, image_size)
    return np.ascontiguousarray(pixels), None


def byte_hash(data: bytes) -> str:
    """32 hex digits (blake2b, 16 bytes) identifying ``data``."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _load_chunk(
    chunk: list[Item], out: np.ndarray, colour: str, size: str, image_size: int
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
            pixels, problem = decode_face(data, colour, size, image_size)
        except Exception as exc:  # a decoder bug must quarantine one file, not stop the run
            pixels, problem = None, f"corrupt_image: decoding failed ({type(exc).__name__}: {exc})"
        if pixels is not None:
            out[row] = pixels
        results.append((byte_hash(data) if data else "", problem))
    return results


def decode_items(
    items: list[Item], on_error: str, colour: str, size: str, image_size: int,
    workers: int | None, progress: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """Decode all items in parallel. Returns (images, kept mask, byte hashes, quarantine).

    ``on_error="fail"`` raises IngestionError on the first bad item, in item order.
    """
    cv2 = opencv()

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
    bar = progress_bar(n, progress, "decode")
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
                        raise IngestionError.for_item(items[index].source_id, problem)
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
