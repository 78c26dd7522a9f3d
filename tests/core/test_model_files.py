"""Files that are not this project's models: one short message naming the file and how a model is
made, never torch's advice to load them with ``weights_only=False`` (that would run their code)."""

from __future__ import annotations

import collections
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from fer_pipeline.core.autoencoder.network import load_autoencoder
from fer_pipeline.core.config import ParameterError
from fer_pipeline.core.models import build_resnet34, load_model, model_config, save_model


class NotAllowed:
    """Any class outside torch's weights_only allow-list: its pickle could run code."""


def _random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(4096))


def _text(path: Path) -> None:
    path.write_text("not a model\n")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _tensor(path: Path) -> None:
    torch.save(torch.zeros(3), path)


def _counter(path: Path) -> None:
    torch.save(collections.Counter(a=1), path)


def _object(path: Path) -> None:
    torch.save({"config": NotAllowed(), "state_dict": {}}, path)


def _plain_pickle(path: Path) -> None:
    path.write_bytes(pickle.dumps({"config": {}, "state_dict": {}}, protocol=4))


def _zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a", "b")


def _no_config(path: Path) -> None:
    torch.save({"state_dict": {}}, path)


NOT_MODELS = [_random_bytes, _text, _empty, _tensor, _counter, _object, _plain_pickle, _zip, _no_config]


def _check_message(error: ParameterError, path: Path, made_by: str) -> None:
    message = str(error)
    assert str(path) in message and made_by in message
    assert "weights_only" not in message and "trusted source" not in message
    assert len(message) - len(str(path)) < 240 and "\n" not in message


@pytest.mark.parametrize("write", NOT_MODELS, ids=lambda write: write.__name__.strip("_"))
def test_a_file_that_is_not_a_model_is_named_without_torchs_unsafe_advice(write, tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    write(path)
    with pytest.raises(ParameterError) as raised:
        load_model(path)
    _check_message(raised.value, path, "kedro run")
    with pytest.raises(ParameterError) as raised:
        load_autoencoder(path)
    _check_message(raised.value, path, "kedro run --pipelines autoencoder")


def test_a_bundle_of_another_network_does_not_fit(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"config": {"arch": "resnet18"}, "state_dict": {"layer.weight": torch.zeros(2)}}, path)
    with pytest.raises(ParameterError, match="its weights do not fit its config") as raised:
        load_model(path)
    _check_message(raised.value, path, "kedro run")


def test_a_folder_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="a folder"):
        load_model(tmp_path)


def test_our_model_still_loads(tmp_path: Path) -> None:
    path = save_model(tmp_path / "ok.pt", build_resnet34(arch="resnet18"), model_config(arch="resnet18"))
    model, config = load_model(path)
    assert config["arch"] == "resnet18" and not model.training
