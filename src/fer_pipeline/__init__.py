"""fer_pipeline: face emotion recognition on FER2013 as a reproducible, tracked Kedro project."""

import os

# The project works offline: kedro-telemetry and mlflow both honour DO_NOT_TRACK.
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

__version__ = "0.1.0"

#: The Python API, imported on first use (``fer_pipeline.EmotionRecognizer``) so that
#: ``import fer_pipeline`` stays light: torch and OpenCV load only when a recognizer is wanted.
_LAZY = {"EmotionRecognizer": "fer_pipeline.core.faces.recognizer", "Face": "fer_pipeline.core.faces.recognizer"}
__all__ = ["EmotionRecognizer", "Face", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fer_pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
