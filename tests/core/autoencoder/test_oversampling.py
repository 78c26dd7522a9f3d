"""core.autoencoder.oversampling: the autoencoder stage's latent-SMOTE oversampling, on tiny drawn faces."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fer_pipeline.core.autoencoder.network import ConvAutoencoder, save_autoencoder
from fer_pipeline.core.autoencoder.oversampling import oversample
from fer_pipeline.core.classes import CLASSES
from tests.core.stage_data import TINY_AE, TRAIN_COUNTS, stage_dataset


@pytest.fixture(scope="module")
def dataset() -> dict[str, np.ndarray]:
    """A canonical dataset dict (as ingestion makes it) of drawn faces."""
    return stage_dataset()


@pytest.fixture(scope="module")
def autoencoder() -> ConvAutoencoder:
    torch.manual_seed(0)
    return ConvAutoencoder(latent_dim=16, base_channels=4).eval()


def test_oversample_reaches_the_targets_from_train_faces_only(dataset, autoencoder, tmp_path):
    synthetic, info = oversample(dataset, autoencoder, TINY_AE)
    targets = np.maximum(TRAIN_COUNTS, math.ceil(0.5 * max(TRAIN_COUNTS)))  # 6 for every smaller class
    assert info["targets"] == dict(zip(CLASSES, targets.tolist()))
    assert info["added"] == dict(zip(CLASSES, (targets - TRAIN_COUNTS).tolist()))
    assert np.bincount(synthetic["labels"], minlength=7).tolist() == (targets - TRAIN_COUNTS).tolist()
    assert synthetic["images"].shape == (len(synthetic["labels"]), 48, 48) and synthetic["images"].dtype == np.uint8

    # val / test faces play no part: other faces there, and more of them, change nothing
    changed = dict(dataset)
    held_out = dataset["splits"] != "train"
    changed["images"] = dataset["images"].copy()
    changed["images"][held_out] = 255 - changed["images"][held_out]
    changed["labels"] = np.where(held_out, 1, dataset["labels"])  # every held-out face "disgust"
    again, again_info = oversample(changed, autoencoder, TINY_AE)
    assert again_info == info
    assert np.array_equal(again["images"], synthetic["images"]) and np.array_equal(again["labels"], synthetic["labels"])

    # from the model file (what the Kedro node passes); disabled: nothing added, targets = counts
    save_autoencoder(tmp_path / "ae.pt", autoencoder)
    from_file, _ = oversample(dataset, tmp_path / "ae.pt", TINY_AE)
    assert np.array_equal(from_file["images"], synthetic["images"])
    off = {**TINY_AE, "oversampling": {**TINY_AE["oversampling"], "enabled": False}}
    none, none_info = oversample(dataset, tmp_path / "missing.pt", off)  # not loaded when disabled
    assert len(none["labels"]) == 0 and none["images"].shape == (0, 48, 48)
    assert none_info["targets"] == dict(zip(CLASSES, TRAIN_COUNTS)) and set(none_info["added"].values()) == {0}
