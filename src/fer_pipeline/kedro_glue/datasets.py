"""Custom Kedro datasets: NumPy array bundles, PyTorch and ONNX model files, folders of figures and of videos.

The model and array files and the videos are written atomically (temp file + rename) so a killed
run never leaves a half-written file that a later run would load.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError

from fer_pipeline.files import atomic_path, save_figure, write_bytes


def _check_plain_names(names, what: str) -> None:
    for name in names:
        if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
            raise DatasetError(f"{what} name {name!r} is not a plain file name")


class NpzDataset(AbstractDataset[dict, dict]):
    """A dict of NumPy arrays in one ``.npz`` file (e.g. the canonical face dataset).

    Loaded with ``allow_pickle=False``: only plain numeric and unicode arrays, never objects.
    """

    def __init__(self, filepath: str, compress: bool = False, metadata: dict | None = None):
        self._filepath = PurePosixPath(filepath)
        self._compress = compress
        self.metadata = metadata

    def load(self) -> dict[str, np.ndarray]:
        path = Path(self._filepath)
        if not path.exists():
            raise DatasetError(
                f"{path} does not exist: run the stage that writes it first, in the same environment "
                "(each writes under its own data root, conf/<env>/globals.yml: the demo's files are in "
                "data/demo/, read with `--env demo`)")
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}

    def save(self, data: dict[str, np.ndarray]) -> None:
        if not isinstance(data, dict):
            raise DatasetError(f"NpzDataset saves a dict of arrays, got {type(data).__name__}")
        with atomic_path(self._filepath) as tmp, open(tmp, "wb") as handle:  # a handle: savez keeps its name
            (np.savez_compressed if self._compress else np.savez)(handle, **data)

    def _exists(self) -> bool:
        return Path(self._filepath).exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "compress": self._compress}


class ModelFile:
    """A handle on a saved model bundle ``{"config": dict, "state_dict": dict}``.

    Loading the catalog entry returns this handle instead of the tensors so that a node can
    choose another source (an MLflow run id) and can say clearly when no model was trained yet.
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.exists()

    def require(self) -> Path:
        """The model's path; a clear error when no model has been trained yet."""
        if not self.path.exists():
            raise FileNotFoundError(
                f"No trained model at {self.path}. Train one first (`kedro run`, or "
                "`kedro run --env demo` on the demo data), or evaluate a logged one with "
                "`kedro run --pipelines evaluate --params evaluate.model_run_id=<MLflow run id>`."
            )
        return self.path

    def load(self, map_location: str = "cpu") -> dict[str, Any]:
        """The bundle, read by ``core.model_files.read_bundle`` (weights_only: loading never runs
        code; another file is a ``ModelFileError``, which ``kedro run`` prints in a line)."""
        from fer_pipeline.core.model_files import read_bundle

        bundle = read_bundle(self.require())
        if str(map_location) != "cpu":
            bundle["state_dict"] = {name: tensor.to(map_location) for name, tensor in bundle["state_dict"].items()}
        return bundle

    def __repr__(self) -> str:
        return f"ModelFile({str(self.path)!r})"


class TorchModelDataset(AbstractDataset[dict, ModelFile]):
    """Model weights + architecture config saved with ``torch.save`` and loaded ``weights_only``.

    ``save`` takes ``{"config": <plain dict>, "state_dict": <tensors>}``; ``load`` returns a
    :class:`ModelFile` handle (the file is read when the node calls ``handle.load()``).
    """

    def __init__(self, filepath: str, metadata: dict | None = None):
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def load(self) -> ModelFile:
        return ModelFile(Path(self._filepath))

    def save(self, data: dict[str, Any]) -> None:
        import torch

        if not isinstance(data, dict) or {"config", "state_dict"} - data.keys():
            raise DatasetError("TorchModelDataset saves a dict with 'config' and 'state_dict'")
        with atomic_path(self._filepath) as tmp:
            torch.save({"config": data["config"], "state_dict": data["state_dict"]}, tmp)

    def _exists(self) -> bool:
        return Path(self._filepath).exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class OnnxFileDataset(AbstractDataset[bytes, Path]):
    """An ONNX model file (``core.onnx_export``): ``save`` takes its bytes and writes them atomically,
    ``load`` returns the file's path (read by ``core.onnx_model.load_onnx_model``, which says what is
    wrong with a missing or corrupt file)."""

    def __init__(self, filepath: str, metadata: dict | None = None):
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def load(self) -> Path:
        return Path(self._filepath)

    def save(self, data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray)):
            raise DatasetError(f"OnnxFileDataset saves the bytes of an ONNX model, got {type(data).__name__}")
        write_bytes(self._filepath, bytes(data))

    def _exists(self) -> bool:
        return Path(self._filepath).exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class FigureFolderDataset(AbstractDataset[dict, dict]):
    """A dict of Matplotlib figures ``{name: Figure}`` as ``<path>/<name>.png``: one figure per
    item of a collection whose size the parameters decide (the evaluate stage's external sets).

    Saving removes the folder's old PNGs first (an item taken out of the parameters leaves no
    stale figure) and always leaves the folder in place, empty for ``{}``, so a wrapping
    ``MlflowArtifactDataset`` can log it (as ``<artifact_path>/<folder name>/``) whatever the
    count. Names must be plain file names. ``load`` returns ``{name: Path}`` of the PNGs.
    """

    def __init__(self, path: str, save_args: dict[str, Any] | None = None, metadata: dict | None = None):
        self._filepath = PurePosixPath(path)
        self._save_args = dict(save_args or {})
        self.metadata = metadata

    def load(self) -> dict[str, Path]:
        folder = Path(self._filepath)
        return {png.stem: png for png in sorted(folder.glob("*.png"))} if folder.is_dir() else {}

    def save(self, data: dict[str, Any]) -> None:
        if not isinstance(data, dict):
            raise DatasetError(f"FigureFolderDataset saves a dict of figures, got {type(data).__name__}")
        _check_plain_names(data, "figure")
        import matplotlib.pyplot as plt

        folder = Path(self._filepath)
        folder.mkdir(parents=True, exist_ok=True)  # made, empty, when there is no figure
        written = set()
        for name, figure in data.items():
            written.add(save_figure(figure, folder / f"{name}.png", **self._save_args))
            plt.close(figure)
        for old in set(folder.glob("*.png")) - written:  # last run's figures that this one does not make
            old.unlink()

    def _exists(self) -> bool:
        return Path(self._filepath).is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._filepath), "save_args": self._save_args}


class VideoFolderDataset(AbstractDataset[dict, dict]):
    """``{name: path of a finished video file}`` -> ``<path>/<name><its extension>`` (the predict
    stage's annotated videos).

    Videos are written frame by frame while they are processed (a whole video never sits in
    memory), so the node hands this dataset finished files. Saving moves each file in (copied to
    a temporary name in the folder, then renamed, so a reader never sees half a video; the source
    is removed), then removes the folder's other videos (an input taken out of the parameters
    leaves no stale video). The folder is always left in place, empty for ``{}``. Names must be
    plain file names. ``load`` returns ``{name: Path}`` of the videos in the folder.
    """

    def __init__(self, path: str, metadata: dict | None = None):
        self._filepath = PurePosixPath(path)
        self.metadata = metadata

    def load(self) -> dict[str, Path]:
        # Imported here: a catalog that never loads videos need not import core.predict.
        from fer_pipeline.core.predict.inputs import VIDEO_EXTENSIONS

        folder = Path(self._filepath)
        if not folder.is_dir():
            return {}
        return {f.stem: f for f in sorted(folder.iterdir())
                if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS and not f.name.startswith(".")}

    def save(self, data: dict[str, Any]) -> None:
        if not isinstance(data, dict):
            raise DatasetError(f"VideoFolderDataset saves a dict of video file paths, got {type(data).__name__}")
        _check_plain_names(data, "video")
        for name, source in data.items():
            if not Path(source).is_file():
                raise DatasetError(f"video {name!r}: no file at {source}")
        folder = Path(self._filepath)
        folder.mkdir(parents=True, exist_ok=True)
        kept = {self._move_in(folder, name, Path(source)) for name, source in data.items()}
        for old in self.load().values():
            if old not in kept:
                old.unlink()

    @staticmethod
    def _move_in(folder: Path, name: str, source: Path) -> Path:
        target = folder / f"{name}{source.suffix.lower()}"
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
        source.unlink()
        return target

    def _exists(self) -> bool:
        return Path(self._filepath).is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._filepath)}
