"""core.training.checkpoint: RNG states restored exactly, fingerprints that see config and data, safe loads."""

from __future__ import annotations

import random

import numpy as np
import torch

from fer_pipeline.core.training import checkpoint


def _draws(generator: torch.Generator) -> tuple:
    return (random.random(), float(np.random.rand()), float(torch.rand(1)), float(torch.rand(1, generator=generator)))


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path):
    checkpoint.seed_everything(7)
    generator = torch.Generator().manual_seed(3)
    _draws(generator)
    checkpoint.atomic_save({"rng": checkpoint.rng_state(generator)}, tmp_path / "last.pt")
    expected = _draws(generator)
    _draws(generator)  # move every stream on
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    checkpoint.set_rng_state(state["rng"], generator)
    assert _draws(generator) == expected
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_fingerprint_sees_values_and_array_bytes():
    images = np.zeros((2, 4, 4), np.uint8)
    base = checkpoint.fingerprint({"lr": 0.1}, images)
    assert checkpoint.fingerprint({"lr": 0.1}, images.copy()) == base
    assert checkpoint.fingerprint({"lr": 0.2}, images) != base
    changed = images.copy()
    changed[0, 0, 0] = 1
    assert checkpoint.fingerprint({"lr": 0.1}, changed) != base
    assert checkpoint.fingerprint({"lr": 0.1}, images.astype(np.int64)) != base  # dtype counts


def test_load_matching_resumes_only_the_same_run(tmp_path, caplog):
    path = tmp_path / "last.pt"
    assert checkpoint.load_matching(path, "abc") is None  # nothing written yet
    checkpoint.atomic_save({"fingerprint": "abc", "epoch": 3}, path)
    assert checkpoint.load_matching(path, "abc")["epoch"] == 3
    assert checkpoint.load_matching(path, "other") is None
    assert "another configuration or dataset" in caplog.text


def test_cpu_state_is_a_detached_copy():
    module = torch.nn.Linear(2, 2)
    state = checkpoint.cpu_state(module)
    with torch.no_grad():
        module.weight.add_(1.0)
    assert not torch.equal(state["weight"], module.weight) and not state["weight"].requires_grad
