"""Autoencoder nodes: the model bundle, the weighted-vs-unweighted table, histories, grids, SMOTE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_pipeline.core.autoencoder.network import load_autoencoder
from fer_pipeline.kedro_glue.datasets import TorchModelDataset
from fer_pipeline.pipelines.autoencoder.nodes import oversample_minorities, train_autoencoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_train_then_oversample_through_the_catalogs_model_file(tiny_dataset, tiny_autoencoder_params, tmp_path):
    bundle, table, metrics, grid = train_autoencoder(tiny_dataset, tiny_autoencoder_params)
    assert bundle["config"] == {"latent_dim": 16, "base_channels": 4}
    assert all(t.device.type == "cpu" for t in bundle["state_dict"].values())
    assert list(table.columns) == ["class", "n", "mse_effective_number", "mae_effective_number", "mse_none",
                                   "mae_none", "mse_change_pct"]
    assert {"autoencoder.loss", "autoencoder_unweighted.loss", "autoencoder.recon_mse_disgust"} <= set(metrics)
    assert metrics["autoencoder.loss"][0]["step"] == 1 and "autoencoder.peak_memory_mb" not in metrics  # CPU
    assert len(grid.axes) > 0

    dataset = TorchModelDataset(filepath=(tmp_path / "autoencoder.pt").as_posix())
    dataset.save(bundle)
    load_autoencoder(tmp_path / "autoencoder.pt")  # a regular autoencoder file
    synthetic, synthetic_grid, counts = oversample_minorities(tiny_dataset, dataset.load(), tiny_autoencoder_params)
    train = tiny_dataset["splits"] == "train"
    before = np.bincount(tiny_dataset["labels"][train], minlength=7)
    added = np.bincount(synthetic["labels"], minlength=7)
    assert (np.maximum(before, 4) - before == added).all()  # every class up to half the largest (8)
    assert counts["autoencoder.synthetic.disgust"]["value"] == added[1] == 2
    assert synthetic["images"].dtype == np.uint8 and len(synthetic_grid.axes) > 0
    torch.testing.assert_close(load_autoencoder(tmp_path / "autoencoder.pt").state_dict()["decoder.3.weight"],
                               bundle["state_dict"]["decoder.3.weight"])
