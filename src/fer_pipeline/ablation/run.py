"""Running the ablation: one training and evaluation per (strategy, seed), recorded as it ends.

Each run trains the ResNet-34 (``core.training.job.train_resnet``: best epoch by PublicTest = val
macro-F1) and scores PublicTest and PrivateTest (``core.evaluation.split.evaluate_split``), the Kedro
nodes' own stages. The oversampling autoencoder is trained once per seed, only when a strategy
needs it (``augmentation.use_synthetic``); its synthetic faces are kept in memory and under
``work/ablation/`` and reused by every strategy and later commands on the same machine. Each run's
selected model (its best epoch) is kept as a model file, ``work/models/<strategy>_seed<seed>.pt``,
for ``fer-predict --model`` and the face benchmarks.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fer_pipeline.core.augmentation.training_set import assemble_training_set
from fer_pipeline.core.autoencoder.oversampling import oversample
from fer_pipeline.core.autoencoder.training import autoencoder_epoch_logger, train_autoencoder
from fer_pipeline.core.device import resolve_device, synchronize
from fer_pipeline.core.evaluation.metrics import HEADLINE_KEYS
from fer_pipeline.core.evaluation.split import evaluate_split
from fer_pipeline.core.models import save_model
from fer_pipeline.core.training.job import train_resnet
from fer_pipeline.files import atomic_path

from .plan import digest, run_fingerprint, run_parameters
from .records import append_run, read_runs, run_key

log = logging.getLogger(__name__)


class SyntheticCache:
    """The autoencoder's synthetic faces per (autoencoder parameters, seed, train data)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.memory: dict[str, dict[str, Any]] = {}

    def get(self, dataset: Mapping[str, Any], ae_params: Mapping[str, Any]) -> tuple[dict, float, str]:
        """(synthetic set, seconds spent now, "trained" | "memory" | "disk")."""
        train = dataset["splits"] == "train"
        data_id = hashlib.sha256(np.ascontiguousarray(dataset["images"][train]).data)
        data_id.update(np.ascontiguousarray(dataset["labels"][train]).data)
        key = digest({"autoencoder": {k: v for k, v in ae_params.items() if k != "device"},
                       "data": data_id.hexdigest()})
        if key in self.memory:
            return self.memory[key], 0.0, "memory"
        path = self.folder / f"synthetic_{key}.npz"
        start = time.perf_counter()
        if path.is_file():
            with np.load(path, allow_pickle=False) as stored:
                synthetic = {k: stored[k] for k in ("images", "labels", "classes")}
            source = "disk"
        else:
            run = train_autoencoder(dataset, ae_params, twin=False,
                                           on_epoch=autoencoder_epoch_logger(ae_params))
            synthetic, _ = oversample(dataset, run.model, ae_params)
            del run
            with atomic_path(path, suffix=".npz") as tmp:
                np.savez(tmp, **synthetic)
            source = "trained"
        self.memory[key] = synthetic
        return synthetic, time.perf_counter() - start, source


def checkpoint_folder(cache: SyntheticCache, strategy: str, seed: int) -> Path:
    """Where a (strategy, seed) run keeps its checkpoints until it is recorded."""
    return cache.folder.parent / "checkpoints" / f"{strategy}_seed{seed}"


def model_file(cache: SyntheticCache, strategy: str, seed: int) -> Path:
    """Where a (strategy, seed) run keeps its selected model (``run_one``)."""
    return cache.folder.parent / "models" / f"{strategy}_seed{seed}.pt"


def run_one(dataset: Mapping[str, Any], params: Mapping[str, Any], strategy: str, seed: int,
            cache: SyntheticCache) -> dict[str, Any]:
    """Train and evaluate one (strategy, seed); returns its record (without the bookkeeping keys)."""
    started = time.perf_counter()
    synthetic, ae_seconds, ae_source = None, 0.0, None
    if params["augmentation"]["use_synthetic"]:
        synthetic, ae_seconds, ae_source = cache.get(dataset, params["autoencoder"])
    training_set, aug_info = assemble_training_set(dataset, synthetic, params["augmentation"])
    device = resolve_device(params["training"]["config"]["device"])
    # A stopped run resumes from its last epoch (the checkpoint's fingerprint must match the
    # config and data, else it starts over); the folder goes once the run is recorded.
    checkpoints = checkpoint_folder(cache, strategy, seed)
    training = {**params["training"], "config": {**params["training"]["config"],
                                                  "checkpoint_dir": checkpoints.as_posix(), "resume": True}}
    synchronize(device)
    start = time.perf_counter()
    result = train_resnet(training_set, dataset, training, params["augmentation"])
    synchronize(device)
    train_seconds = time.perf_counter() - start
    tta = params["evaluate"]["tta"]
    val, test = (evaluate_split(result.model, result.config, dataset, split, tta, params["evaluate"]).report
                 for split in ("val", "test"))
    save_model(model_file(cache, strategy, seed), result.model, result.config)
    train_cfg = result.train_config
    rates = [row["images_per_s"] for row in result.history]
    clean = test.get("without_leaked_duplicates") or {}
    record = {
        "strategy": strategy, "seed": seed,
        "loss": train_cfg["loss"], "sampler": train_cfg["sampler"], "optimizer": train_cfg["optimizer"],
        "use_synthetic": bool(params["augmentation"]["use_synthetic"]),
        "aux_weight": train_cfg["aux_weight"], "classifier": result.config.get("classifier"),
        "epochs": train_cfg["epochs"], "select_metric": train_cfg["select_metric"], "select_split": "val", "tta": tta,
        "best_epoch": result.best_epoch,
        **{f"val_{k}": val[k] for k in HEADLINE_KEYS},
        **{f"test_{k}": test[k] for k in HEADLINE_KEYS},
        # PrivateTest without the copies of training faces (None: the dataset has none there)
        **{f"test_clean_{k}": clean.get(k) for k in HEADLINE_KEYS}, "test_clean_excluded": clean.get("excluded"),
        "test_clean_recall": clean.get("recall"),
        "val_recall": {row["class"]: row["recall"] for row in val["per_class"]},
        "test_recall": {row["class"]: row["recall"] for row in test["per_class"]},
        "test_f1": {row["class"]: row["f1"] for row in test["per_class"]},
        "train_seconds": train_seconds,
        "images_per_s_median": statistics.median(rates[1:] or rates) if rates else None,
        "train_images": aug_info["training_set_size"], "synthetic_images": aug_info["synthetic_faces"],
        "autoencoder_seconds": ae_seconds, "autoencoder_source": ae_source,
        "peak_gpu_memory_mb": result.device_info.get("peak_memory_mb"),
        "device": result.device_info.get("name"),
        "machine": result.device_info, "precision": result.device_info.get("autocast"),
        "torch": torch.__version__, "history": result.history,
        "wall_seconds": time.perf_counter() - started,  # autoencoder (when trained now), training, evaluation
        "resumed_from_epoch": result.resumed_from_epoch,  # epochs done by an earlier, stopped command
    }
    del result
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return record


@dataclass
class PlannedRun:
    strategy: str
    seed: int
    params: dict[str, Any]
    fingerprint: str
    done: bool


def plan_runs(defaults: Mapping[str, Any], ablation: Mapping[str, Any], strategies: Sequence[str],
              seeds: Sequence[int], sets: Sequence[str], subset: int | None, done: set) -> list[PlannedRun]:
    """Every (strategy, seed), seed-major (a killed command leaves whole seeds behind it)."""
    plan = []
    for seed in seeds:
        for strategy in strategies:
            params = run_parameters(defaults, ablation, strategy, seed, sets)
            fingerprint = run_fingerprint(params, subset)
            plan.append(PlannedRun(strategy, seed, params, fingerprint, (strategy, seed, fingerprint) in done))
    return plan


def merge_done(runs_path: Path, done_files: Sequence[str | os.PathLike], write: bool) -> set:
    """Keys of the runs already recorded: ours, then ``done_files``' (copied into ours when
    ``write``, so ours stays the whole record)."""
    done = {run_key(r) for r in read_runs([runs_path])}
    for record in read_runs(done_files):
        if run_key(record) not in done:
            if write:
                append_run(runs_path, record)
            done.add(run_key(record))
    return done


def run_planned(todo: Sequence[PlannedRun], dataset: Mapping[str, Any], ablation: Mapping[str, Any],
                ingestion_params: Mapping[str, Any], sets: Sequence[str], subset: int | None, work: Path,
                runs_path: Path, env: str | None = None,
                on_record: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Train and record each run of ``todo`` in turn, appending its line as soon as it ends
    (then ``on_record(record)``: its MLflow run). ``env``: the conf environment of the defaults."""
    cache = SyntheticCache(work / "ablation")
    schedule = digest({"common": ablation["common"], "sets": list(sets), "subset": subset})
    for index, planned in enumerate(todo, 1):
        if planned.params["ingestion"] != ingestion_params:
            raise SystemExit(f"strategy {planned.strategy} changes the ingestion parameters: not supported "
                             "(one dataset per command)")
        log.info("run %d/%d: %s seed %d", index, len(todo), planned.strategy, planned.seed)
        record = run_one(dataset, planned.params, planned.strategy, planned.seed, cache)
        record.update(fingerprint=planned.fingerprint, schedule=schedule,
                      overrides=ablation["strategies"][planned.strategy], sets=list(sets), subset=subset,
                      duplicates=ingestion_params["duplicates"], env=env,
                      finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        append_run(runs_path, record)
        shutil.rmtree(checkpoint_folder(cache, planned.strategy, planned.seed), ignore_errors=True)
        if on_record is not None:
            on_record(record)
        log.info("  %s seed %d: val macro-F1 %.4f, test acc %.4f, test macro-F1 %.4f (%.0f s)", planned.strategy,
                 planned.seed, record["val_macro_f1"], record["test_accuracy"], record["test_macro_f1"],
                 record["train_seconds"])
