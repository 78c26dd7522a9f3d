"""The runner's measurements around the model: the naive DataLoader against the fast path (and
``torch.compile``), the epochs that fit a deadline, and the resumption check. A measurement that
fails is recorded, not raised: it costs no model."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from fer_pipeline.core.device import autocast_dtype_for, channels_last_pays
from fer_pipeline.files import write_json
from fer_pipeline.runner import throughput
from fer_pipeline.runner.dataset_loading import resolve_data
from fer_pipeline.runner.records import PipelineRun

log = logging.getLogger("fer_pipeline.runner")

#: ``--deadline-s``'s estimate of a training epoch: the fast path's model-step time times
#: EPOCH_OVERHEAD (the loop's EMA and bookkeeping) plus EPOCH_FIXED_SECONDS (validation,
#: checkpoint). On the H200 (docs/gpu/metrics.json) the loop ran at 1/1.28 of the fast path and
#: an epoch took 3.55 s all in; these say 4.03 s, a little on the safe side.
EPOCH_OVERHEAD = 1.15

EPOCH_FIXED_SECONDS = 1.5

#: Where ``--deadline-s``'s choice of epochs is kept in ``--work`` (deleted by ``--fresh``).
EPOCH_FIT_FILE = "epoch_fit.json"


#: Set by SIGTERM: the measurements that record their failures instead of raising them re-raise
#: then (a DataLoader turns the signal into its own RuntimeError), so the run stops when told.
_terminating = False


def stop_on_signal(signum: int, frame: Any) -> None:
    global _terminating
    _terminating = True
    sys.exit(128 + signum)


def run_naive_baseline(run: PipelineRun, steps: int, workers: int, compile_steps: int = 0) -> None:
    """bench_training's two paths on the dataset's own JPEGs, when it has a FER folder layout
    (``steps`` 0: the fast path alone, 50 steps, as the throughput that ``--deadline-s`` sizes
    the training by); with ``compile_steps``, the fast path under ``torch.compile`` too, its
    warm-up being the compile time. A failure here is recorded, not raised: it costs no model."""
    root = resolve_data(run.data, run.work) if run.data.is_file() else run.data
    if not any((root / "train").glob("*/*.jpg")):
        run.metrics["naive_baseline"] = {"skipped": f"{root} has no train/<class>/*.jpg files"}
        run.save()
        return
    config = run.params["training"]["config"]
    amp = config.get("amp", "auto")
    settings = throughput.StepSettings(
        stem=run.params["training"]["model"]["stem"], batch_size=config["batch_size"], steps=steps or 50,
        warmup=min(10, steps or 50), seed=config["seed"], workers=workers, amp=amp,
        channels_last=channels_last_pays(run.device, autocast_dtype_for(amp, run.device)))
    policy = run.params["augmentation"]["policy"]
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # as training does (core.training.loop, not deterministic)
    try:
        with _recorded_failure(run, "naive_baseline"), run.timer("naive_baseline"):
            run.metrics["naive_baseline"] = throughput.naive_vs_fast(root, settings, run.device, policy,
                                                                     naive=steps > 0)
        eager = run.metrics["naive_baseline"].get("fast_images_per_s")
        if compile_steps > 0 and eager:
            compiled = dataclasses.replace(settings, compile=True, steps=compile_steps)
            with _recorded_failure(run, "compile_probe"), run.timer("compile_probe"):
                result = throughput.naive_vs_fast(root, compiled, run.device, policy, naive=False)
                run.metrics["compile_probe"] = {
                    "compiled_images_per_s": result["fast_images_per_s"], "compile_warmup_s": result["fast_warmup_s"],
                    "eager_images_per_s": eager, "eager_warmup_s": run.metrics["naive_baseline"]["fast_warmup_s"],
                    "steps": compile_steps, "speedup": result["fast_images_per_s"] / eager}
    finally:
        torch.backends.cudnn.benchmark = benchmark
    run.save()


@contextlib.contextmanager
def _recorded_failure(run: PipelineRun, key: str) -> Iterator[None]:
    """A measurement's exception recorded as ``metrics[key]["error"]`` instead of raised: it costs
    no model. Not while the run is being stopped (SIGTERM), which must stop it."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - a measurement, not a stage the model needs
        if _terminating:
            raise
        log.exception("%s failed", key)
        run.metrics.setdefault(key, {})["error"] = f"{type(exc).__name__}: {exc}"


def fit_training_epochs(run: PipelineRun, dataset: Mapping[str, np.ndarray], synthetic: Mapping[str, np.ndarray],
                        seconds_left: float, reserve_seconds: float) -> None:
    """Cut ``training.config.epochs`` (never raise it) so that training ends ``reserve_seconds``
    before the command's time is up, from the fast path's measured images/s (one process's):
    on a machine lent for minutes a finished shorter schedule beats a killed longer one. A DRW
    epoch is cut in proportion. The choice is kept in ``--work``: a command run again there
    without ``--fresh`` keeps it, and so resumes the same schedule from its checkpoint."""
    config = run.params["training"]["config"]
    wanted = int(config["epochs"])
    fit_file = run.work / EPOCH_FIT_FILE
    if fit_file.is_file():
        fit = json.loads(fit_file.read_text(encoding="utf-8"))
        log.info("epochs: %d, as fitted by an earlier command (%s)", fit["epochs"], fit_file)
    else:
        rate = run.metrics.get("naive_baseline", {}).get("fast_images_per_s")
        if not rate:
            log.warning("--deadline-s: no measured training throughput; the configured %d epochs run", wanted)
            run.metrics["epoch_fit"] = {"skipped": "no measured training throughput", "epochs": wanted}
            return
        faces = int((dataset["splits"] == "train").sum())
        if run.params["augmentation"]["use_synthetic"]:
            faces += int(len(synthetic["labels"]))
        steps = config.get("steps_per_epoch") or max(1, faces // config["batch_size"])
        epoch_seconds = steps * config["batch_size"] / rate * EPOCH_OVERHEAD + EPOCH_FIXED_SECONDS
        fit = {"configured_epochs": wanted, "epochs": throughput.epochs_that_fit(
                   seconds_left - reserve_seconds, epoch_seconds, wanted), "seconds_left": seconds_left,
               "reserve_seconds": reserve_seconds, "estimated_epoch_seconds": epoch_seconds, "fast_images_per_s": rate}
        write_json(fit_file, fit)
        log.info("epochs: %d of the configured %d fit in the %.0f s left (%.1f s an epoch estimated)", fit["epochs"],
                 wanted, seconds_left - reserve_seconds, epoch_seconds)
    config["epochs"] = int(fit["epochs"])
    if config.get("drw_epoch") is not None and wanted > 0:
        config["drw_epoch"] = int(config["drw_epoch"] * config["epochs"] / wanted)
    run.metrics["epoch_fit"] = fit
    run.save()


def run_resume_check(run: PipelineRun, dataset: Mapping[str, np.ndarray], steps: int) -> None:
    """``fer_pipeline.runner.resume_check`` on this device; recorded, not raised, when it fails."""
    from fer_pipeline.runner.resume_check import check_resume

    with _recorded_failure(run, "resume_check"), run.timer("resume_check"):
        run.metrics["resume_check"] = check_resume(dataset, run.params, run.work, steps)
        log.info("resume check: %s", run.metrics["resume_check"])
    run.save()
