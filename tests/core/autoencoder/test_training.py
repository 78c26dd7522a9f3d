"""core.autoencoder.training: the autoencoder stage's training and error table, on tiny drawn faces."""

from __future__ import annotations

import numpy as np
import pytest

from fer_pipeline.core.autoencoder.training import autoencoder_config, train_autoencoder
from tests.core.stage_data import TINY_AE, TRAIN_COUNTS, stage_dataset


@pytest.fixture(scope="module")
def dataset() -> dict[str, np.ndarray]:
    """A canonical dataset dict (as ingestion makes it) of drawn faces."""
    return stage_dataset()


def test_autoencoder_config_sets_the_stage_keys_aside_and_takes_overrides():
    cfg = autoencoder_config(TINY_AE, weighting="none")
    assert cfg.latent_dim == 16 and cfg.weighting == "none" and cfg.epochs == 1
    assert not hasattr(cfg, "oversampling") and not hasattr(cfg, "compare_unweighted")
    with pytest.raises(ValueError, match=r"'lattent_dim' \(did you mean 'latent_dim'\?\)"):
        autoencoder_config({**TINY_AE, "lattent_dim": 8})  # a typo is not silently ignored


def test_train_autoencoder_error_table_with_and_without_twin(dataset):
    run = train_autoencoder(dataset, TINY_AE)
    assert len(run.history) == 1 and len(run.twin_history) == 1
    assert list(run.errors[0]) == ["class", "n", "mse_effective_number", "mae_effective_number", "mse_none",
                                   "mae_none", "mse_change_pct"]
    assert [row["n"] for row in run.errors] == TRAIN_COUNTS  # the train split only
    for row in run.errors:
        assert row["mse_change_pct"] == pytest.approx(100.0 * (row["mse_effective_number"] / row["mse_none"] - 1))
    assert run.peak_memory_mb is None  # CPU
    assert run.device_info["device"] == "cpu" and "torch" in run.device_info
    assert (run.device_info["amp"], run.device_info["autocast"]) == ("off", "float32")  # YAML's `amp: false`

    alone = train_autoencoder(dataset, TINY_AE, twin=False)
    assert alone.twin_history is None
    assert list(alone.errors[0]) == ["class", "n", "mse_effective_number", "mae_effective_number"]
    # the same seed and data: the weighted model does not depend on whether a twin ran
    assert [r["mse_effective_number"] for r in alone.errors] == [r["mse_effective_number"] for r in run.errors]
    unweighted = train_autoencoder(dataset, {**TINY_AE, "weighting": "none"})
    assert unweighted.twin_history is None and "mse_none" in unweighted.errors[0]
