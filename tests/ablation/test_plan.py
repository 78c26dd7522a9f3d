"""fer_pipeline.ablation.plan: strategies are overrides on the defaults, one schedule for all."""

from __future__ import annotations

from pathlib import Path

import pytest

from fer_pipeline.ablation.plan import epochs_for_time, load_ablation, run_fingerprint, run_parameters
from fer_pipeline.params import load_parameters

REPO = Path(__file__).resolve().parents[2]


def test_ablation_config_strategies_are_overrides():
    config = load_ablation(REPO / "conf" / "ablation.yml")
    assert len(config["seeds"]) >= 2
    assert list(config["strategies"]) == [
        "ce", "weighted_ce", "cb_focal", "ldam_drw", "logit_adjusted", "ae_oversample_ce",
        "ae_oversample_logit_adjusted", "aux_reconstruction", "class_balanced_sampler"]
    defaults = load_parameters(REPO / "conf" / "base")
    runs = {name: run_parameters(defaults, config, name, 7) for name in config["strategies"]}
    epochs = {params["training"]["config"]["epochs"] for params in runs.values()}
    assert epochs == {config["common"]["training"]["config"]["epochs"]}  # one schedule for all
    assert runs["ce"]["training"]["config"]["loss"] == "ce" and runs["ce"]["training"]["config"]["seed"] == 7
    assert runs["ae_oversample_logit_adjusted"]["augmentation"]["use_synthetic"] is True
    assert runs["aux_reconstruction"]["training"]["model"]["aux_reconstruction"] is True
    assert runs["class_balanced_sampler"]["augmentation"]["sampler"] == "class_balanced"
    # the rest of every strategy is the default configuration
    assert runs["cb_focal"]["augmentation"]["policy"] == defaults["augmentation"]["policy"]
    assert len({run_fingerprint(p, None) for p in runs.values()}) == len(runs)


def _pipeline_metrics(epoch_seconds: float, ae_epoch_seconds: float) -> dict:
    """The parts of a GPU runner's metrics.json that time the ablation."""
    return {"training": {"epochs_run": 60, "epoch_seconds_total": 60 * epoch_seconds},
            "stages": {"autoencoder": {"epochs": 60, "seconds": 60 * ae_epoch_seconds}}}


def test_epochs_for_time_share_the_time_among_all_runs():
    config = load_ablation(REPO / "conf" / "ablation.yml")
    defaults = load_parameters(REPO / "conf" / "base")

    def runs(strategies, sets=()):
        return [run_parameters(defaults, config, name, seed, list(sets)) for seed in (0, 1) for name in strategies]

    timing = _pipeline_metrics(3.0, 1.0)
    # CE alone: no autoencoder; 2 runs x (E epochs x 3.3 s + 5 s) <= 100 s -> E = 13, capped at the config's 12
    only_ce = epochs_for_time(100, timing, runs(["ce"]), run_overhead_s=5)
    assert only_ce["epochs"] == 12 and only_ce["runs"] == 2 and only_ce["autoencoder_seconds"] == 0
    assert only_ce["epoch_seconds"] == pytest.approx(3.3)
    # with an oversampling strategy each seed trains the autoencoder once (15 epochs x 1 s)
    fit = epochs_for_time(200, timing, runs(["ce", "ae_oversample_ce"]), run_overhead_s=5)
    assert fit["autoencoder_seconds"] == pytest.approx(2 * 15 * 1.0)
    assert fit["epochs"] == int((200 - 30 - 4 * 5) // (4 * 3.3))  # = 11
    # the command's own settings count: --ae-epochs 1, and a longer schedule set for every run
    shorter = epochs_for_time(200, timing, runs(["ce", "ae_oversample_ce"], ["autoencoder.epochs=1",
                                                 "training.config.epochs=40"]), run_overhead_s=5)
    assert shorter["autoencoder_seconds"] == pytest.approx(2.0) and shorter["configured_epochs"] == 40
    assert shorter["epochs"] == int((200 - 2 - 4 * 5) // (4 * 3.3))  # = 13


def test_epochs_for_time_needs_a_finished_training():
    config = load_ablation(REPO / "conf" / "ablation.yml")
    run = run_parameters(load_parameters(REPO / "conf" / "base"), config, "ce", 0)
    with pytest.raises(ValueError, match="no finished training"):
        epochs_for_time(100, {"training": {"epochs_done": 3}}, [run], run_overhead_s=5)


def test_the_short_schedule_validates_trained_weights_not_the_initial_ones():
    """The EMA weights are validated and kept: after the shortened schedule on FER2013 (28,709
    faces) the initial random weights must hold under 1 % of them (the default 0.999 keeps 26 %)."""
    config = load_ablation(REPO / "conf" / "ablation.yml")
    params = run_parameters(load_parameters(REPO / "conf" / "base"), config, "ce", 0)
    train = params["training"]["config"]
    steps = train["epochs"] * (28_709 // train["batch_size"])
    assert train["ema"] and train["ema_decay"] ** steps < 0.01
    assert train["ema_decay"] ** (3 * (28_709 // train["batch_size"])) < 0.05  # also at 3 epochs (docs/gpu)
