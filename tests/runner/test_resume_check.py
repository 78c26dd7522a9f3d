"""fer_pipeline.runner.resume_check: a stopped-and-resumed run against the same run uninterrupted."""

from __future__ import annotations

from pathlib import Path

import pytest

from fer_pipeline.core.training import checkpoint
from fer_pipeline.params import apply_sets, load_parameters
from fer_pipeline.runner import resume_check
from fer_pipeline.runner.dataset_loading import load_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dataset_and_params(fer_demo_folder, tmp_path_factory):
    params = apply_sets(load_parameters(REPO / "conf" / "base"), [
        "training.model.arch=resnet18", "training.model.stem=imagenet", "training.config.batch_size=8",
        "training.config.eval_batch_size=64", "training.config.amp=off"])
    dataset, _ = load_dataset(fer_demo_folder, params["ingestion"], tmp_path_factory.mktemp("work"))
    return dataset, params


def test_resumed_run_is_identical_on_cpu(dataset_and_params, tmp_path, one_torch_thread):
    dataset, params = dataset_and_params
    report = resume_check.check_resume(dataset, params, tmp_path, steps=2, faces_per_split=40)
    assert report["identical"] is True and report["resumed_from_epoch"] == 2
    assert report["max_abs_final_state_difference"] == 0.0  # last epoch's weights, EMA and optimiser
    assert report["max_abs_weight_difference"] == 0.0 and report["max_abs_history_difference"] == 0.0
    assert 40 <= report["train_faces"] <= 47 and report["steps_per_epoch"] == 2  # every class kept
    assert not (tmp_path / "resume_check").exists()  # its checkpoints are removed
    assert params["training"]["config"]["epochs"] == 60  # the pipeline's parameters are left alone


def test_a_resume_that_loses_state_is_reported(dataset_and_params, tmp_path, monkeypatch, one_torch_thread):
    """A checkpoint whose RNG states are not restored resumes with other batches: caught."""
    dataset, params = dataset_and_params
    monkeypatch.setattr(checkpoint, "set_rng_state", lambda state, generator: None)
    report = resume_check.check_resume(dataset, params, tmp_path, steps=2, faces_per_split=40)
    # the resumed epoch trains on other batches: its loss and its final weights differ
    assert report["identical"] is False and report["max_abs_history_difference"] > 0
    assert report["max_abs_final_state_difference"] > 0


def test_stop_must_leave_an_epoch_to_resume(dataset_and_params, tmp_path):
    with pytest.raises(ValueError, match="at least one epoch"):
        resume_check.check_resume(*dataset_and_params, tmp_path, steps=1, epochs=2, stop_after=1)


def test_state_difference_walks_nested_states():
    import math

    import torch

    a = {"model": {"w": torch.ones(2)}, "optimizer": {"param_groups": [{"lr": 0.1, "params": [0]}]}}
    b = {"model": {"w": torch.tensor([1.0, 1.5])}, "optimizer": {"param_groups": [{"lr": 0.1, "params": [0]}]}}
    assert resume_check._state_difference(a, a) == 0.0
    assert resume_check._state_difference(a, b) == 0.5
    assert resume_check._state_difference(a, {"model": {}, "optimizer": a["optimizer"]}) == math.inf
