"""fer_pipeline: face emotion recognition on FER2013 as a reproducible, tracked Kedro project."""

import os

# The project works offline: kedro-telemetry and mlflow both honour DO_NOT_TRACK.
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

__version__ = "0.1.0"
