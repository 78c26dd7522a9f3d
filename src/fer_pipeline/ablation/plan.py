"""The ablation's plan: conf/ablation.yml, each run's parameters, and what identifies a run.

A strategy is a set of parameter overrides on the default parameters (conf/base), after a
shortened schedule common to all (``common``). A run is (strategy, seed); its fingerprint is a
digest of everything that decides its result, so a finished run is recognised and skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from fer_pipeline.params import apply_sets, deep_merge, read_yaml_file

#: Parameters that do not change a run's result (left out of its fingerprint).
RESULT_NEUTRAL = {
    "ingestion": ("source_path", "workers", "demo"),
    "autoencoder": ("device",),
    "training.config": ("device", "checkpoint_dir", "resume", "eval_batch_size", "compile"),
    # how many processes does change the result (float sums, per-rank augmentation), the rest not
    "training.distributed": ("backend", "timeout_s", "monitor_interval_s"),
    "evaluate": ("device", "batch_size", "model_run_id", "split"),
}


def load_ablation(path: str | os.PathLike) -> dict[str, Any]:
    """conf/ablation.yml, checked: ``seeds`` (>= 1 ints), ``common`` and ``strategies`` (dicts)."""
    config = read_yaml_file(path) or {}
    unknown = set(config) - {"seeds", "common", "strategies"}
    if unknown:
        raise ValueError(f"{path}: unknown top-level keys {sorted(unknown)}")
    seeds = config.get("seeds") or []
    if not seeds or not all(isinstance(s, int) for s in seeds):
        raise ValueError(f"{path}: 'seeds' must be a list of integers")
    strategies = config.get("strategies") or {}
    if not strategies:
        raise ValueError(f"{path}: no strategies")
    return {"seeds": list(seeds), "common": config.get("common") or {},
            "strategies": {name: (value or {}) for name, value in strategies.items()}}


def seed_overrides(seed: int) -> dict[str, Any]:
    """Every seed a run has: the training's, the augmentation's, the autoencoder's and its SMOTE's."""
    return {"training": {"config": {"seed": seed}}, "augmentation": {"seed": seed},
            "autoencoder": {"seed": seed, "oversampling": {"seed": seed}}}


def run_parameters(defaults: Mapping[str, Any], ablation: Mapping[str, Any], strategy: str, seed: int,
                   sets: Sequence[str] | None = None) -> dict[str, Any]:
    """defaults <- common <- strategy <- command-line sets <- seed."""
    params = deep_merge(defaults, ablation["common"])
    params = deep_merge(params, ablation["strategies"][strategy])
    params = apply_sets(params, list(sets or []))
    return deep_merge(params, seed_overrides(seed))


def _without_neutral(params: Mapping[str, Any]) -> dict[str, Any]:
    params = deep_merge(params, {})
    for section, keys in RESULT_NEUTRAL.items():
        node = params
        for part in section.split("."):
            node = node.get(part, {})
        for key in keys:
            node.pop(key, None)
    return params


def digest(payload: Any) -> str:
    """A short sha256 of a JSON-able value (keys sorted)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_fingerprint(params: Mapping[str, Any], subset: int | None) -> str:
    """What decides a run's result: the stages' parameters (less device / file settings) + subset."""
    relevant = _without_neutral(params)
    sections = {key: relevant[key] for key in ("ingestion", "augmentation", "training")}
    sections["evaluate_tta"] = relevant["evaluate"]["tta"]
    if relevant["augmentation"]["use_synthetic"]:
        sections["autoencoder"] = relevant["autoencoder"]
    return digest({"params": sections, "subset": subset})


def epochs_for_time(fit_seconds: float, pipeline_metrics: Mapping[str, Any], runs: Sequence[Mapping[str, Any]],
                    run_overhead_s: float, margin: float = 1.1) -> dict[str, Any]:
    """The epoch count, the same for every run, at which all ``runs`` (each run's parameters,
    ``run_parameters``) fit in ``fit_seconds``, from a pipeline run's measured times on the same
    machine (the GPU runner's ``metrics.json``): its mean training epoch and its autoencoder
    epoch. The oversampling autoencoder is trained once per seed that a run needs it for; each
    run adds ``run_overhead_s`` (model build, evaluation). ``margin`` covers the larger
    oversampled training sets. At most the runs' configured epochs, at least 1. Returns the count
    with the figures it came from."""
    from fer_pipeline.runner.throughput import epochs_that_fit

    training = pipeline_metrics.get("training") or {}
    if not training.get("epochs_run") or not training.get("epoch_seconds_total"):
        raise ValueError("the pipeline metrics have no finished training to time the ablation by")
    epoch_seconds = training["epoch_seconds_total"] / training["epochs_run"] * margin
    autoencoder = (pipeline_metrics.get("stages") or {}).get("autoencoder") or {}
    ae_epoch_seconds = autoencoder["seconds"] / autoencoder["epochs"] if autoencoder.get("epochs") else 0.0
    autoencoders = {run["autoencoder"]["seed"]: int(run["autoencoder"]["epochs"]) for run in runs
                    if run["augmentation"]["use_synthetic"]}
    ae_seconds = sum(autoencoders.values()) * ae_epoch_seconds
    wanted = min(int(run["training"]["config"]["epochs"]) for run in runs)
    epochs = epochs_that_fit(fit_seconds, epoch_seconds, wanted, runs=len(runs),
                             fixed_seconds=ae_seconds + len(runs) * run_overhead_s)
    return {"epochs": epochs, "configured_epochs": wanted, "fit_seconds": fit_seconds, "runs": len(runs),
            "epoch_seconds": epoch_seconds, "autoencoder_seconds": ae_seconds, "run_overhead_s": run_overhead_s}
