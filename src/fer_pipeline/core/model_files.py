"""Reading a model file this project wrote: ``{"config", "state_dict"}`` (docs/DESIGN.md, "Model files").

The one reader of the classifier (``core.models.load_model``: fer-predict, fer-serve's served
model, the evaluate and predict stages), the autoencoder and Kedro's ``ModelFile``. A file that is
not such a bundle (random bytes, text, a checkpoint of another program, a pickle holding code)
raises ``ModelFileError`` naming the file and how a model is made, never torch's own advice to
re-run ``torch.load`` with ``weights_only=False``: that would run whatever code the file holds.
``download_run_model`` fetches the file an MLflow run logged (the evaluate stage's
``model_run_id``, ``EmotionRecognizer.from_mlflow``).
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


#: Where training logs the classifier's files in its MLflow run: conf/base/catalog.yml's
#: ``resnet_model.artifact_path`` (the file keeps its name, ``resnet34.pt``) and ``resnet_onnx``'s
#: (``resnet34.onnx``, its ONNX export).
RUN_MODEL_ARTIFACT = "model"


def download_run_model(run_id: str, dst: str | os.PathLike, tracking_uri: str | None = None,
                       suffixes: tuple[str, ...] = (".pt",)) -> Path:
    """The model file MLflow run ``run_id`` logged (``RUN_MODEL_ARTIFACT/*<suffix>``, the first of
    ``suffixes`` it logged one of), downloaded into ``dst`` with MLflow's own client (any store
    MLflow reads). ``tracking_uri`` None: MLflow's current one (``mlflow.set_tracking_uri``,
    ``MLFLOW_TRACKING_URI``, else ``mlflow.db`` in the working directory: the project's store when
    run from its root). ``ModelFileError`` for a run the store does not have or one that logged no
    model file. MLflow is imported here only."""
    import mlflow
    from mlflow.exceptions import MlflowException

    where = tracking_uri or mlflow.get_tracking_uri()
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    try:
        client.get_run(run_id)
        artifacts = sorted(item.path for item in client.list_artifacts(run_id, RUN_MODEL_ARTIFACT))
    except MlflowException as error:
        raise ModelFileError(f"no MLflow run {run_id!r} in {where} ({error.message}); "
                             "pass the store of the run as tracking_uri") from error
    logged = [path for suffix in suffixes for path in artifacts if path.endswith(suffix)]
    if not logged:
        raise ModelFileError(f"MLflow run {run_id} in {where} logged no model file ({RUN_MODEL_ARTIFACT}/*.pt): "
                             "only runs that train the classifier (`kedro run`, `--pipelines training`) log one")
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=logged[0], dst_path=os.fspath(dst),
                                                tracking_uri=tracking_uri)
    return Path(local)
