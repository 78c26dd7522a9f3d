"""Reading a model file this project wrote: ``{"config", "state_dict"}`` (docs/DESIGN.md, "Model files").

The one reader of the classifier (``core.models.load_model``: fer-predict, fer-serve's served
model, the evaluate and predict stages), the autoencoder and Kedro's ``ModelFile``. A file that is
not such a bundle (random bytes, text, a checkpoint of another program, a pickle holding code)
raises ``ModelFileError`` naming the file and how a model is made, never torch's own advice to
re-run ``torch.load`` with ``weights_only=False``: that would run whatever code the file holds.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fer_pipeline.core.config import ParameterError

#: Where the classifier's file comes from (conf/base/catalog.yml's ``resnet_model``, per environment).
CLASSIFIER_ORIGIN = "models are written by `kedro run` (to data/06_models/resnet34.pt; `--env demo`: data/demo/)"


class ModelFileError(ParameterError):
    """A file given as a model that is not one this project wrote, or cannot be read. A
    ``ParameterError``: the user's mistake, which ``kedro run`` and the commands print in a line."""


def not_a_model(path: str | os.PathLike, reason: str, origin: str = CLASSIFIER_ORIGIN) -> ModelFileError:
    return ModelFileError(f"{path} is not a model file of this project ({reason}): {origin}")


def read_bundle(path: str | os.PathLike, origin: str = CLASSIFIER_ORIGIN) -> dict[str, Any]:
    """``{"config": dict, "state_dict": tensors}`` of a model file, on the CPU (the caller moves the
    model: loading straight onto a device would turn a device error into "not a model").

    ``torch.load(weights_only=True)``: reading a file never runs code. ``FileNotFoundError`` is
    left to the callers, which each say how to get a model; any other failure is ``ModelFileError``
    (``origin``: how such a model is made, for the message)."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # torch warns about files it did not write (pickle protocols); the error below says it
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except IsADirectoryError as error:
        raise not_a_model(path, "a folder", origin) from error
    except OSError as error:
        raise ModelFileError(f"cannot read model file {path}: {error.strerror or error}") from error
    except Exception as error:  # noqa: BLE001 - unpickling, zip and EOF errors alike: not our file
        raise not_a_model(path, "not a PyTorch file of tensors, or one that holds code too", origin) from error
    if not (isinstance(payload, Mapping) and isinstance(payload.get("config"), Mapping)
            and isinstance(payload.get("state_dict"), Mapping)):
        raise not_a_model(path, f"it holds a {type(payload).__name__}, not a config and a state_dict", origin)
    return {"config": dict(payload["config"]), "state_dict": dict(payload["state_dict"])}


def load_weights(model: torch.nn.Module, state: Mapping[str, Any], path: str | os.PathLike,
                 origin: str = CLASSIFIER_ORIGIN) -> None:
    """``model.load_state_dict(state)``, or ``ModelFileError`` saying how the file's weights differ
    from the network its config describes (torch's own error lists every key, hundreds of lines)."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shapes that differ: the line after torch's heading names the first
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise not_a_model(path, f"its weights do not fit its config: {lines[min(1, len(lines) - 1)]}",
                          origin) from error
    if missing or unexpected:
        raise not_a_model(path, f"its weights do not fit its config: {len(missing)} missing, "
                          f"{len(unexpected)} unknown, e.g. {(list(missing) + list(unexpected))[0]!r}", origin)
