"""FER2013's framing, measured: where the eyes sit in its 48x48 training faces, for ``core.faces.align``.

Takes ``--faces`` training faces at random (seed 0, all classes), upscales each ``--upscale`` x
(INTER_CUBIC) and pads it by ``--pad`` x its side in mid grey (YuNet finds few landmarks on a 48-px
face, and fewer when the face touches the border), runs YuNet (``YuNetDetector`` at full resolution,
its default score threshold), keeps the detection nearest the centre and maps its landmarks back to
the 48x48 face. Each face is measured in its own axes (``align.face_frame``: along and across the eye
line), as fractions of the crop side:

- ``eye_distance``: the distance between the eyes;
- ``eyes_x``, ``eyes_y``: the eyes' midpoint in the crop, seen level (what ``align`` places);
- ``mouth_drop``: the mouth corners' midpoint below the eyes, across the eye line;
- ``angle``: the eye line's tilt in degrees (FER2013's faces are only roughly level).

The table gives the median, quartiles and the spread (interquartile range / median) of each; the
medians are ``align``'s constants. The second table repeats the medians for other upscales and pads
on the same faces, to show they do not depend on how the small faces were prepared.

    python benchmarks/fer2013_framing.py                              # 3000 faces
    python benchmarks/fer2013_framing.py --data ../shared/datasets/fer2013/train --faces 5000
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np

from fer_pipeline.core.faces.align import face_frame
from fer_pipeline.core.faces.yunet import YuNetDetector

MEASURES = ("eye_distance", "eyes_x", "eyes_y", "mouth_drop", "angle")


def face_files(root: Path, count: int, seed: int = 0) -> list[Path]:
    files = sorted(root.glob("*/*.jpg"))
    if not files:
        raise SystemExit(f"no <class>/*.jpg faces under {root}; pass --data <fer2013>/train")
    random.Random(seed).shuffle(files)
    return files[:count]


def landmarks_48(gray: np.ndarray, detector: YuNetDetector, upscale: int, pad: float):
    """YuNet's landmarks of a small face in its own pixels (continuous: 0 at its top-left edge,
    ``side`` at its bottom-right), None when YuNet finds no face."""
    import cv2

    side = gray.shape[0]
    big = cv2.resize(gray, (side * upscale, side * upscale), interpolation=cv2.INTER_CUBIC)
    border = int(round(side * upscale * pad))
    big = cv2.copyMakeBorder(big, border, border, border, border, cv2.BORDER_CONSTANT, value=128)
    detections = detector.detect_faces(big)
    if not detections:
        return None
    centre = big.shape[0] / 2.0
    nearest = min(detections, key=lambda d: abs(d.box[0] + d.box[2] / 2 - centre)
                  + abs(d.box[1] + d.box[3] / 2 - centre))
    # Pixel index i of the upscaled face covers [i, i+1) / upscale of the small one.
    return [((x - border + 0.5) / upscale, (y - border + 0.5) / upscale) for x, y in nearest.landmarks]


def framing(landmarks, side: float) -> dict[str, float]:
    """``MEASURES`` of one face whose axis-aligned crop is [0, side)^2."""
    frame = face_frame(landmarks)
    along, across = frame.to_face((side / 2.0, side / 2.0))  # the crop's centre, in the face's axes
    return {"eye_distance": frame.eye_distance / side, "eyes_x": 0.5 - along / side,
            "eyes_y": 0.5 - across / side, "mouth_drop": frame.mouth_drop / side,
            "angle": float(np.degrees(frame.angle))}


def measure(files: list[Path], detector: YuNetDetector, upscale: int, pad: float) -> dict[str, np.ndarray]:
    import cv2

    rows = []
    for path in files:
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        points = landmarks_48(gray, detector, upscale, pad) if gray is not None else None
        if points is not None:
            rows.append(framing(points, gray.shape[0]))
    return {name: np.array([row[name] for row in rows]) for name in MEASURES}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/fer2013/train"))
    parser.add_argument("--faces", type=int, default=3000)
    parser.add_argument("--upscale", type=int, default=4)
    parser.add_argument("--pad", type=float, default=0.25, help="grey border, as a fraction of the upscaled side")
    args = parser.parse_args(argv)

    files = face_files(args.data, args.faces)
    detector = YuNetDetector(detect_max_side=None, min_size_fraction=0.0)
    values = measure(files, detector, args.upscale, args.pad)
    found = len(values["angle"])
    print(f"YuNet found landmarks on {found} of {len(files)} faces ({found / len(files):.1%}); "
          f"upscale {args.upscale}, pad {args.pad}")
    print(f"{'measure':14s} {'median':>8s} {'p25':>8s} {'p75':>8s} {'IQR/med':>8s}")
    for name in MEASURES:
        p25, median, p75 = np.percentile(values[name], [25, 50, 75])
        spread = f"{(p75 - p25) / abs(median):8.3f}" if name != "angle" else f"{'':8s}"
        print(f"{name:14s} {median:8.4f} {p25:8.4f} {p75:8.4f} {spread}")

    print("\nmedians by preparation (same faces)")
    print(f"{'upscale':>7s} {'pad':>5s} {'found':>6s} " + " ".join(f"{name:>12s}" for name in MEASURES))
    for upscale, pad in ((3, 0.0), (3, 0.25), (4, 0.0), (4, 0.25), (4, 0.5), (6, 0.25)):
        other = values if (upscale, pad) == (args.upscale, args.pad) else measure(files, detector, upscale, pad)
        print(f"{upscale:7d} {pad:5.2f} {len(other['angle']):6d} "
              + " ".join(f"{np.median(other[name]):12.4f}" for name in MEASURES))


if __name__ == "__main__":
    main()
