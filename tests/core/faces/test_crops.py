"""Tests for core.faces.crops: square face crops with a margin, edges replicated at the border."""

from __future__ import annotations

import numpy as np

from fer_pipeline.core.faces.crops import crop_faces


def test_crop_faces_margin_and_borders() -> None:
    gray = np.zeros((100, 120), dtype=np.uint8)
    gray[30:70, 40:80] = 200  # a 40x40 "face"
    tight = crop_faces(gray, [(40, 30, 40, 40)], margin=0.0, size=48)
    assert tight.shape == (1, 48, 48) and tight.dtype == np.uint8
    assert np.all(tight == 200)
    loose = crop_faces(gray, [(40, 30, 40, 40)], margin=0.25)
    assert loose[0, 0, 0] == 0 and loose[0, 24, 24] == 200  # margin shows background

    corner = np.zeros((100, 120), dtype=np.uint8)
    corner[:40, :40] = 200  # face in the top-left corner: the margin runs off the image
    crops = crop_faces(corner, [(0, 0, 40, 40), (70, 50, 40, 40)], margin=0.25)
    assert crops.shape == (2, 48, 48)
    assert crops[0, 0, 0] == 200  # replicated edge, not black padding
    assert crops[0, -1, -1] == 0
