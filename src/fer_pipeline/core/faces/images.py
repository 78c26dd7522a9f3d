"""Image files and bytes -> RGB uint8 pixels: reading, the header's size, decoding, grey and BGR.

Decoding is ``ingestion.decode.imdecode``, the one OpenCV decode shared with ingestion, after
the same format sniffing and truncation check (``sniff_format``, ``truncation``). cv2 is
imported lazily so ``core`` stays importable where OpenCV is missing.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from fer_pipeline.core.ingestion.decode import imdecode, sniff_format, truncation

#: The most pixels an image may have (fer-predict's ``--max-pixels``, ``serving.max_pixels``): a
#: 225-megapixel photo took 2.35 GB to decode and search, and nothing needs more for faces.
MAX_PIXELS = 50_000_000
#: The colour orders a 3-channel image may come in (``to_gray``'s and ``find_faces``' ``channels``):
#: ``rgb`` as ``decode_image`` gives it, ``bgr`` as OpenCV reads video frames.
CHANNEL_ORDERS: tuple[str, ...] = ("rgb", "bgr")


class UnreadableImageError(ValueError):
    """The file is empty, truncated, corrupt, or not an image OpenCV can decode."""


class ImageTooLargeError(UnreadableImageError):
    """The image has more pixels than the caller allows (``decode_image(max_pixels=...)``)."""


def load_image(path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """An image file -> RGB uint8 (H, W, 3): ``decode_image`` on the file's bytes, an image over
    ``max_pixels`` refused from its header (``ImageTooLargeError``; None: no limit).

    Reads with ``np.fromfile`` so non-ASCII paths work on every OS. Raises
    ``UnreadableImageError`` for empty, truncated, corrupt or non-image files.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise UnreadableImageError(f"cannot read file: {error.strerror or error}") from error
    if data.size == 0:
        raise UnreadableImageError("empty file (0 bytes)")
    return decode_image(data.tobytes(), max_pixels=max_pixels)


def image_size(raw: bytes) -> tuple[int, int] | None:
    """(width, height) from the image's header, without decoding its pixels; None when Pillow
    cannot read the header. An image past Pillow's decompression-bomb ceiling (twice
    ``PIL.Image.MAX_IMAGE_PIXELS``, about 179 million pixels) is ``ImageTooLargeError``."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(raw)) as image:
                return image.size
        except Image.DecompressionBombError as error:
            raise ImageTooLargeError(f"over Pillow's decompression-bomb ceiling: {error}") from error
        except Exception:  # noqa: BLE001 - a header Pillow cannot parse: the decoder decides
            return None


def _check_pixel_count(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{width}x{height} = {width * height:,} pixels is over the limit of {max_pixels:,}"
        )


def decode_image(raw: bytes, max_pixels: int | None = None) -> np.ndarray:
    """Encoded image bytes (JPEG/PNG/BMP/WebP/TIFF; grey, colour, RGBA, 16-bit) -> RGB uint8 (H, W, 3).

    EXIF orientation is applied; transparent pixels are composited onto white. ``max_pixels``:
    refuse a larger image (``ImageTooLargeError``) from its header, before decoding allocates it.
    Raises ``UnreadableImageError`` for empty, truncated, corrupt or non-image bytes.
    """
    import cv2

    if not raw:
        raise UnreadableImageError("empty (0 bytes)")
    fmt = sniff_format(raw)
    if truncation(raw, fmt) is not None:
        end = "end-of-image marker" if fmt == "jpeg" else "IEND chunk"
        raise UnreadableImageError(f"truncated {fmt.upper()} (no {end})")
    size = image_size(raw) if max_pixels is not None else None
    if size is not None:
        _check_pixel_count(*size, max_pixels)
    try:
        # "bgr": grey -> 3 channels, 16-bit -> 8-bit, EXIF orientation applied.
        bgr = imdecode(raw, "bgr")
    except cv2.error as error:
        raise UnreadableImageError(f"OpenCV could not decode it: {error}") from error
    if bgr is None:
        raise UnreadableImageError("not an image, or a corrupt/truncated one (OpenCV could not decode it)")
    if max_pixels is not None and size is None:  # a header Pillow could not read
        _check_pixel_count(bgr.shape[1], bgr.shape[0], max_pixels)

    if fmt in ("png", "webp", "tiff"):  # the formats that may carry alpha
        unchanged = imdecode(raw, "unchanged")
        if unchanged is not None and unchanged.ndim == 3 and unchanged.shape[2] == 4:
            scale = 65535.0 if unchanged.dtype == np.uint16 else 255.0
            pixels = unchanged.astype(np.float32) / scale
            alpha = pixels[..., 3:4]
            composited = pixels[..., :3] * alpha + (1.0 - alpha)  # onto white
            bgr = np.clip(composited * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def check_channels(channels: str) -> str:
    """``channels`` when it is a colour order (``CHANNEL_ORDERS``), else a ``ValueError`` saying which are."""
    if channels not in CHANNEL_ORDERS:
        raise ValueError(f"channels must be one of {', '.join(CHANNEL_ORDERS)} (the colour order of a 3-channel "
                         f"image), got {channels!r}")
    return channels


def to_gray(image: np.ndarray, channels: str = "rgb") -> np.ndarray:
    """A colour (H,W,3) image in ``channels`` order (``rgb``, as decoded here; ``bgr``, OpenCV's own,
    as video frames come) or grey (H,W) uint8 -> grey (H,W) uint8 (a grey image as it is)."""
    import cv2

    check_channels(channels)
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY if channels == "rgb" else cv2.COLOR_BGR2GRAY)


def to_bgr(image: np.ndarray, channels: str = "rgb") -> np.ndarray:
    """A colour image in ``channels`` order or a grey one -> BGR (H,W,3) uint8 (a BGR image as it is)."""
    import cv2

    check_channels(channels)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image if channels == "bgr" else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
