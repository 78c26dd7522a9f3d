"""The predict stage's parameters, checked before a photo is read or a model loaded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fer_pipeline.core.backends import check_backend, check_backend_options
from fer_pipeline.core.config import reject_unknown_keys
from fer_pipeline.core.device import amp_mode
from fer_pipeline.core.faces.detector import (
    DEFAULT_ALIGN,
    DEFAULT_DETECTOR,
    DETECT_MAX_SIDE,
    detector_options,
)
from fer_pipeline.core.inference import TTA_MODES

#: The predict stage's parameters (conf/base/parameters_predict.yml).
PREDICT_KEYS = ("inputs", "margin", "tta", "backend", "device", "amp", "detector", "detect_max_side",
                "detect_retry_max_side", "min_score", "min_face", "align", "workers", "every_n_frames", "demo_photos")


def check_predict_params(params: Mapping[str, Any]) -> None:
    """Typos and bad values in params:predict fail at the stage's first node, before a photo is
    read or a model loaded, not when the first video (or face) reaches the bad value."""
    reject_unknown_keys(params, PREDICT_KEYS, "predict")
    backend = check_backend(params.get("backend", "torch"), "predict.backend")
    check_backend_options(backend, params.get("device", "auto"), amp_mode(params.get("amp", "auto")), "predict.")
    detector_options(params.get("detector", DEFAULT_DETECTOR), params.get("min_score"), params.get("min_face"), "predict",
                     detect_max_side=params.get("detect_max_side", DETECT_MAX_SIDE),
                     detect_retry_max_side=params.get("detect_retry_max_side"))
    if not isinstance(params.get("align", DEFAULT_ALIGN), bool):
        raise ValueError(f"predict.align must be true or false, got {params['align']!r}")
    if params.get("tta", "none") not in TTA_MODES:
        raise ValueError(f"predict.tta must be one of {', '.join(TTA_MODES)}, got {params.get('tta')!r}")
    for key, default, least in (("margin", 0.2, 0), ("every_n_frames", 1, 1), ("workers", None, 1)):
        value = params.get(key, default)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < least):
            raise ValueError(f"predict.{key} must be a number >= {least}" + (" or null" if default is None else "")
                             + f", got {value!r}")
    if not isinstance(params.get("every_n_frames", 1), int):
        raise ValueError(f"predict.every_n_frames must be a whole number, got {params['every_n_frames']!r}")
