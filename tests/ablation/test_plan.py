"""fer_pipeline.ablation.plan: strategies are overrides on the defaults, one schedule for all."""

from __future__ import annotations

from pathlib import Path

from fer_pipeline.ablation.plan import load_ablation, run_fingerprint, run_parameters
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
