"""The synthetic demo faces: one parametric renderer with class-dependent expressions.

FER2013 cannot ship with the project, so a fresh checkout trains on drawn faces instead. Every
face is drawn, at any resolution, from unit face coordinates (u right, v down, the face box is
[-1, 1]^2):

* ``draw_face``: a 48x48 grayscale FER-style crop (rendered at 2x, then area-downsampled), with
  random pose, face size, lighting gradient, contrast, background, blur and noise, and per-sample
  jitter on the expression parameters so that look-alike classes (fear~surprise, sad~neutral,
  angry~disgust) overlap a little.
* ``draw_photo``: a larger RGB "photo" with skin-toned faces at given boxes, drawn so that
  OpenCV's Haar frontal-face cascade finds them (dark brows and eyes, a light nose bridge, a
  darker mouth on a lighter oval): the predict stage is tested on these.

``fer_pipeline.demo.dataset`` writes them to disk in FER2013's folder layout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from fer_pipeline.core.classes import NUM_CLASSES

#: Bumped whenever the drawing changes, so that a stored dataset of an older look is regenerated.
GENERATOR_VERSION = 1

#: Expression parameters, one row per class in canonical order. Columns (see ``_PARAM_NAMES``):
#: brow_angle (+ = inner ends raised), brow_height (+ = raised), eye_open (1 = wide),
#: mouth_curve (+ = smile), mouth_open, mouth_width (1 = normal), mouth_asym (one corner raised,
#: side chosen at random), nose_wrinkle, teeth. Look-alike pairs share most values on purpose.
_PARAM_NAMES = (
    "brow_angle", "brow_height", "eye_open", "mouth_curve", "mouth_open",
    "mouth_width", "mouth_asym", "nose_wrinkle", "teeth",
)
_CLASS_PARAMS = np.array(
    [
        # angle height  eye   curve  open  width  asym  wrinkle teeth
        [-0.85, -0.75, 0.62, -0.35, 0.10, 0.88, 0.00, 0.45, 0.50],  # angry
        [-0.60, -0.55, 0.48, -0.50, 0.06, 0.90, 0.55, 0.90, 0.30],  # disgust
        [+0.80, +0.60, 1.05, -0.25, 0.45, 1.12, 0.00, 0.00, 0.30],  # fear
        [+0.00, +0.10, 0.55, +0.90, 0.35, 1.20, 0.00, 0.00, 1.00],  # happy
        [+0.00, +0.00, 0.75, +0.00, 0.02, 0.95, 0.00, 0.00, 0.00],  # neutral
        [+0.65, -0.10, 0.62, -0.50, 0.02, 0.90, 0.00, 0.00, 0.00],  # sad
        [+0.35, +1.00, 1.18, +0.00, 0.85, 0.72, 0.00, 0.00, 0.10],  # surprise
    ],
    dtype=np.float64,
)
#: Per-sample jitter (standard deviation) of each expression parameter.
_PARAM_JITTER = np.array([0.30, 0.30, 0.14, 0.25, 0.12, 0.10, 0.15, 0.25, 0.25])
#: Bounds that keep jittered parameters drawable (closed eyes, negative widths...).
_PARAM_LOW = np.array([-np.inf, -np.inf, 0.25, -np.inf, 0.0, 0.55, -np.inf, 0.0, 0.0])
_PARAM_HIGH = np.array([np.inf, np.inf, 1.4, np.inf, 1.1, 1.4, np.inf, 1.2, 1.0])

_SUPERSAMPLE = 2  # draw_face renders at 2x and area-downsamples: smoother edges at 48 px
_SHIFT = 4  # fractional bits for cv2 drawing: sub-pixel-accurate anti-aliased polygons
_FIX = float(1 << _SHIFT)


# --------------------------------------------------------------------------------------------
# The parametric face renderer
# --------------------------------------------------------------------------------------------


def _expression(label: int, rng: np.random.Generator) -> dict[str, float]:
    """The class's expression parameters with per-sample jitter."""
    if not 0 <= label < NUM_CLASSES:
        raise ValueError(f"label must lie in [0, {NUM_CLASSES}), got {label}")
    values = _CLASS_PARAMS[label] + rng.normal(0.0, _PARAM_JITTER)
    values = np.clip(values, _PARAM_LOW, _PARAM_HIGH)
    params = dict(zip(_PARAM_NAMES, values.tolist()))
    params["mouth_asym"] *= 1.0 if rng.random() < 0.5 else -1.0
    return params


@lru_cache(maxsize=None)
def _unit_circle(n: int) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _ellipse(cu: float, cv: float, au: float, av: float, n: int = 28) -> np.ndarray:
    """Polygon (n,2) of an axis-aligned ellipse in unit face coordinates."""
    return _unit_circle(n) * (au, av) + (cu, cv)


def _band(u: np.ndarray, v: np.ndarray, half_thickness: np.ndarray | float) -> np.ndarray:
    """Polygon of a stroke along the curve (u, v), thickened vertically."""
    m = len(u)
    out = np.empty((2 * m, 2))
    out[:m, 0] = u
    out[:m, 1] = v - half_thickness
    out[m:, 0] = u[::-1]
    out[m:, 1] = (v + half_thickness)[::-1]
    return out


def _between(u: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Polygon of the region between two curves over the same u."""
    return np.concatenate([np.stack([u, top], 1), np.stack([u, bottom], 1)[::-1]])


class _Painter:
    """Fills polygons given in unit face coordinates through an affine map onto a canvas."""

    def __init__(self, canvas: np.ndarray, matrix: np.ndarray) -> None:
        self.canvas = canvas
        # pixel = A @ (u, v) + t, pre-scaled to cv2's fixed-point coordinates (shift bits)
        self.linear = matrix[:, :2].T * _FIX
        self.offset = matrix[:, 2] * _FIX
        self.channels = 1 if canvas.ndim == 2 else canvas.shape[2]

    def fill(self, polygons: np.ndarray | list[np.ndarray], color: np.ndarray) -> None:
        import cv2

        if isinstance(polygons, np.ndarray):
            polygons = [polygons]
        points = [np.rint(poly @ self.linear + self.offset).astype(np.int32) for poly in polygons]
        value = color.tolist()  # one value per channel
        cv2.fillPoly(self.canvas, points, value, lineType=cv2.LINE_AA, shift=_SHIFT)


def _palette(skin: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Colours of the face parts, from the skin colour (1 value for gray, 3 for RGB)."""
    skin = np.asarray(skin, dtype=np.float64)
    dark_hair = rng.random() < 0.85
    hair_level = rng.uniform(10, 80) if dark_hair else rng.uniform(120, 200)
    hair = np.full_like(skin, hair_level)
    warm = np.array([1.05, 0.85, 0.85]) if skin.size == 3 else 1.0  # reddish lips and mouth
    if skin.size == 3:
        hair = hair * np.array([1.0, 0.85, 0.7]) * rng.uniform(0.8, 1.2)
    colors = {
        "skin": skin,
        "ear": skin * 0.9,
        "socket": skin * rng.uniform(0.66, 0.76),
        "eye_white": np.minimum(skin * rng.uniform(0.95, 1.1) + 10, 240),
        "iris": np.full_like(skin, rng.uniform(10, 45)),
        "lash": np.full_like(skin, rng.uniform(10, 40)),
        "brow": np.minimum(hair, skin * 0.35) if dark_hair else skin * rng.uniform(0.3, 0.45),
        "bridge": skin * rng.uniform(1.06, 1.15),
        "nose_shadow": skin * 0.78,
        "nostril": skin * 0.45,
        "fold": skin * 0.8,
        "lip": skin * rng.uniform(0.6, 0.75) * warm,
        "mouth": skin * rng.uniform(0.3, 0.42) * warm,
        "teeth": np.full_like(skin, rng.uniform(185, 240)),
        "hair": hair,
    }
    clipped = np.clip(np.stack(list(colors.values())), 0, 255)
    return dict(zip(colors, clipped))


_SIDES = (-1.0, 1.0)
_HAIRLINE_U = np.linspace(-0.9, 0.9, 19)
_CAP = np.stack([0.95 * np.cos(np.linspace(np.pi * 1.06, np.pi * 1.94, 24)),
                 -0.08 + 1.06 * np.sin(np.linspace(np.pi * 1.06, np.pi * 1.94, 24))], axis=1)
_WRINKLE_U = np.linspace(-0.09, 0.09, 5)
_LID_U = np.linspace(-0.18, 0.18, 13)
_LID_SHAPE = np.sqrt(np.clip(1 - (_LID_U / 0.18) ** 2, 0, 1))
_BROW_T = np.linspace(0.0, 1.0, 11)  # 0 = inner end, 1 = outer end
_BROW_ARCH = 0.05 * np.sin(np.pi * _BROW_T)
_MOUTH_T = np.linspace(-1.0, 1.0, 21)
_MOUTH_BULGE = np.sqrt(np.clip(1 - _MOUTH_T**2, 0, 1))
_FOLD_T = np.linspace(0.0, 1.0, 6)


def _render_face(painter: _Painter, params: dict[str, float], colors: dict[str, np.ndarray],
                 rng: np.random.Generator, hair: bool = True) -> None:
    """Draw one face (hair, oval, ears, brows, eyes, nose, mouth) in unit face coordinates."""
    p = params
    if hair:
        hair_bottom = rng.uniform(-0.1, 0.6)  # short to shoulder-length at the sides
        outline = _ellipse(0.0, -0.08, rng.uniform(0.97, 1.08), rng.uniform(1.02, 1.12), 40)
        painter.fill(outline[outline[:, 1] < hair_bottom], colors["hair"])
    painter.fill([_ellipse(side * 0.9, -0.02, 0.12, 0.22) for side in _SIDES], colors["ear"])
    painter.fill(_ellipse(0.0, 0.02, 0.88, 1.0, 48), colors["skin"])
    if hair:
        # Fringe: the top of the hair outline down to a hairline curving lower at the temples.
        hairline_v = rng.uniform(-0.78, -0.55) + 0.28 * _HAIRLINE_U**2 + rng.normal(0, 0.02, _HAIRLINE_U.size)
        hairline = np.stack([_HAIRLINE_U, hairline_v], axis=1)
        painter.fill(np.concatenate([_CAP, hairline[::-1]], axis=0), colors["hair"])

    # A light nose bridge between the eyes (a contrast Haar face features key on), the nose
    # tip's shadow and nostrils, and (disgust, anger) wrinkles across the bridge.
    painter.fill(_ellipse(0.0, -0.02, 0.075, 0.26), colors["bridge"])
    painter.fill(_ellipse(0.0, 0.30, 0.15, 0.055), colors["nose_shadow"])
    painter.fill([_ellipse(side * 0.065, 0.31, 0.04, 0.024, 16) for side in _SIDES], colors["nostril"])
    if p["nose_wrinkle"] > 0.05:
        wrinkle = colors["bridge"] * (1.0 - 0.4 * min(p["nose_wrinkle"], 1.0))
        painter.fill([_band(_WRINKLE_U, -0.04 + 0.06 * k + 0.4 * _WRINKLE_U**2, 0.012) for k in range(3)], wrinkle)

    # Eyes: a soft dark socket, the eye white (openness), iris, and a dark upper lid line.
    half_open = 0.1 * p["eye_open"]
    eye_v = -0.12
    for step in (1.0, 0.8, 0.6):  # a soft shadow: nested ellipses, darker inwards
        shade = colors["skin"] + (colors["socket"] - colors["skin"]) * (1.3 - step)
        axes = (0.27 * step, (0.16 + 0.04 * p["eye_open"]) * step)
        painter.fill([_ellipse(side * 0.35, eye_v - 0.03, *axes) for side in _SIDES], shade)
    painter.fill([_ellipse(side * 0.35, eye_v, 0.17, half_open) for side in _SIDES], colors["eye_white"])
    iris_axes = (0.075, min(0.075, half_open * 0.95))
    painter.fill([_ellipse(side * 0.35, eye_v + 0.005, *iris_axes, 20) for side in _SIDES], colors["iris"])
    lid_v = eye_v - half_open * _LID_SHAPE
    lid_half = 0.018 + 0.01 * _LID_SHAPE**2
    painter.fill([_band(side * 0.35 + _LID_U, lid_v, lid_half) for side in _SIDES], colors["lash"])

    # Brows: inner ends at u=+-0.12, outer at +-0.58; angle raises (+) or lowers (-) the inner end.
    brow_v = (-0.36 - 0.11 * p["brow_height"] - 0.10 * p["brow_angle"] * (1 - _BROW_T)
              + 0.04 * p["brow_angle"] * _BROW_T - _BROW_ARCH)
    brow_half = 0.05 - 0.02 * _BROW_T
    painter.fill([_band(side * (0.12 + 0.46 * _BROW_T), brow_v, brow_half) for side in _SIDES], colors["brow"])

    # Mouth: centre line curved by mouth_curve, tilted by mouth_asym, opened by mouth_open.
    t = _MOUTH_T
    half_width = 0.3 * p["mouth_width"]
    u = t * half_width
    centre = 0.58 - p["mouth_curve"] * 0.13 * t**2 + p["mouth_curve"] * 0.05 + p["mouth_asym"] * 0.07 * t
    upper = centre - p["mouth_open"] * 0.07 * _MOUTH_BULGE
    lower = centre + p["mouth_open"] * 0.18 * _MOUTH_BULGE
    fold = max(p["mouth_curve"], 0.0) * 0.7 + p["nose_wrinkle"] * 0.4
    if fold > 0.15:  # nasolabial folds: smile and disgust
        fold_u = 0.17 + (half_width - 0.11) * _FOLD_T
        folds = [_band(-fold_u, 0.28 + (centre[0] - 0.26) * _FOLD_T, 0.012 + 0.012 * min(fold, 1.0)),
                 _band(fold_u, 0.28 + (centre[-1] - 0.26) * _FOLD_T, 0.012 + 0.012 * min(fold, 1.0))]
        painter.fill(folds, colors["fold"])
    painter.fill(_band(u, (upper + lower) / 2, (lower - upper) / 2 + 0.02), colors["lip"])
    if p["mouth_open"] > 0.04:
        painter.fill(_between(u, upper, lower), colors["mouth"])
        if p["teeth"] > 0.3 and p["mouth_open"] > 0.12:
            painter.fill(_between(u * 0.9, upper + 0.01, upper + (lower - upper) * 0.35 * p["teeth"]), colors["teeth"])
    else:
        painter.fill(_band(u, centre, 0.012), colors["mouth"])


def _face_matrix(center: tuple[float, float], half_size: tuple[float, float], angle_deg: float) -> np.ndarray:
    """Affine map unit face coordinates -> pixels: rotate, scale to the box, move to its centre."""
    a = math.radians(angle_deg)
    rotation = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    matrix = np.zeros((2, 3))
    matrix[:, :2] = rotation @ np.diag(half_size)
    matrix[:, 2] = center
    return matrix


def draw_face(label: int, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A drawn grayscale face (uint8, ``size`` x ``size``) whose expression depends on ``label``."""
    import cv2

    params = _expression(label, rng)
    canvas_size = size * _SUPERSAMPLE
    background = rng.uniform(15, 235)
    canvas = np.full((canvas_size, canvas_size), background, dtype=np.uint8)
    if rng.random() < 0.5:  # some backgrounds carry a shade of their own
        ramp = np.linspace(-1, 1, canvas_size)[None, :] * rng.uniform(-40, 40)
        canvas = np.clip(canvas + (ramp if rng.random() < 0.5 else ramp.T), 0, 255).astype(np.uint8)

    skin = np.array([rng.uniform(110, 205)])
    colors = _palette(skin, rng)
    face_scale = rng.uniform(0.78, 0.98) * canvas_size / 2
    aspect = rng.uniform(0.9, 1.05)
    center = (canvas_size / 2 + rng.normal(0, 0.04) * canvas_size,
              canvas_size / 2 + rng.normal(0.02, 0.04) * canvas_size)
    angle = float(np.clip(rng.normal(0, 6.0), -15, 15))
    painter = _Painter(canvas, _face_matrix(center, (face_scale * aspect, face_scale), angle))
    _render_face(painter, params, colors, rng, hair=rng.random() < 0.85)

    image = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    # Lighting: a linear gradient in a random direction, then contrast about the mean.
    theta = rng.uniform(0, 2 * np.pi)
    coords = np.linspace(-1, 1, size, dtype=np.float32)
    gradient = math.cos(theta) * coords[None, :] + math.sin(theta) * coords[:, None]
    image *= 1.0 + rng.uniform(0.0, 0.35) * gradient
    mean = float(image.mean())
    image = (image - mean) * rng.uniform(0.65, 1.2) + mean + rng.normal(0, 12)
    sigma = rng.uniform(0.0, 0.9)
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    image += rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(2.0, 8.0)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Photos for the predict stage
# --------------------------------------------------------------------------------------------

_SKIN_TONES = np.array(
    [[255, 219, 172], [241, 194, 125], [224, 172, 140], [198, 134, 66], [170, 120, 80], [141, 85, 36]],
    dtype=np.float64,
)


def _photo_background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Float32 (H,W,3) smooth background: a two-colour gradient plus low-frequency blotches."""
    import cv2

    top, bottom = rng.uniform(30, 200, 3), rng.uniform(30, 200, 3)
    theta = rng.uniform(0, 2 * np.pi)
    xs = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
    ys = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
    mix = np.clip((math.cos(theta) * xs + math.sin(theta) * ys + 1) / 2, 0, 1)[..., None]
    image = (top * (1 - mix) + bottom * mix).astype(np.float32)
    blotches = rng.normal(0, 1, (4, 5, 3)).astype(np.float32)
    image += cv2.resize(blotches, (width, height), interpolation=cv2.INTER_CUBIC) * rng.uniform(5, 20)
    return image


def draw_photo(
    faces: Sequence[tuple[int, tuple[int, int, int, int]]],
    size: tuple[int, int] = (480, 360),
    rng: np.random.Generator | None = None,
    color: bool = True,
) -> np.ndarray:
    """A "photo" (``size`` = (width, height)) with a drawn face of class ``label`` in each box.

    ``faces`` holds ``(label, (x, y, w, h))``; the oval fills the box, hair and neck lie around
    it. Faces of ~100 px and more are found by OpenCV's Haar frontal-face cascade. Returns
    uint8 RGB (H,W,3), or grayscale (H,W) when ``color`` is False.
    """
    rng = np.random.default_rng() if rng is None else rng
    width, height = int(size[0]), int(size[1])
    canvas = _photo_background(width, height, rng)
    people = []
    for label, (x, y, w, h) in faces:
        params = _expression(int(label), rng)
        tone = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.85, 1.1)
        colors = _palette(np.clip(tone, 0, 255), rng)
        angle = float(np.clip(rng.normal(0, 3.0), -8, 8))
        painter = _Painter(canvas, _face_matrix((x + w / 2, y + h / 2), (w / 2, h / 2), angle))
        people.append((painter, params, colors, rng.uniform(20, 230, 3)))
    # Bodies first, faces after: a neighbour's shoulders must never cover a face.
    for painter, _, colors, shirt in people:
        painter.fill(_ellipse(0.0, 2.3, 1.7, 0.9, 40), shirt)
        painter.fill(np.array([[-0.38, 0.5], [0.38, 0.5], [0.42, 1.55], [-0.42, 1.55]]), colors["skin"] * 0.85)
    for painter, params, colors, _ in people:
        _render_face(painter, params, colors, rng, hair=rng.random() < 0.9)
    canvas += rng.normal(0, rng.uniform(1.0, 4.0), canvas.shape).astype(np.float32)
    photo = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    if not color:
        import cv2

        return cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    return photo
