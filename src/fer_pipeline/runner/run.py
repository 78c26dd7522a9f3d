"""The whole default pipeline without Kedro or MLflow: ``scripts/gpu_pipeline.py``'s engine.

Its stages are the Kedro nodes' own (``fer_pipeline.core.stages``), with the same parameters,
read from ``conf/base/parameters_*.yml`` (``fer_pipeline.params``):

    ingestion -> class balance -> autoencoder (+ unweighted twin) -> latent-SMOTE oversampling
    [-> naive DataLoader baseline vs the fast path, and the fast path under torch.compile
        (``fer_pipeline.runner.throughput``); with --deadline-s the epochs cut to fit from its img/s]
    -> augmentation (training set) -> ResNet-34 training (selected on PublicTest = val)
    -> evaluation on PublicTest and PrivateTest (= test), without and with ten-crop TTA
    -> the returned float16 model (``fer_pipeline.runner.model_transport``)
    [-> external sets] [-> the resumption check on this device (``fer_pipeline.runner.resume_check``)]

The test split is read only by the evaluation stage, after the model is chosen: training sees
train + val, the best epoch is picked on val, and the TTA mode is picked on val too.

Needs torch, torchvision, numpy, Pillow, PyYAML and scikit-learn; not kedro, mlflow, pandas,
matplotlib or OpenCV (without OpenCV ingestion decodes with Pillow: identical pixels on
FER2013's JPEGs). ``metrics.json`` (everything, rewritten after every stage), ``per_class.csv``,
``confusion.csv``, ``history.csv`` and ``pipeline.log`` go to ``--out``; the float32 model, the
autoencoder and the training checkpoints stay in ``--work``, so a command stopped at a time
limit resumes where it stopped when run again on the same machine.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import platform
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fer_pipeline.core.augmentation.training_set import assemble_training_set
from fer_pipeline.core.autoencoder.network import save_autoencoder
from fer_pipeline.core.autoencoder.oversampling import oversample
from fer_pipeline.core.autoencoder.training import autoencoder_epoch_logger, train_autoencoder
from fer_pipeline.core.class_balance.summary import class_balance_summary
from fer_pipeline.core.classes import SPLIT_TO_FER_NAME
from fer_pipeline.core.device import autocast_dtype_for, channels_last_pays, resolve_device, synchronize
from fer_pipeline.core.evaluation import external_sets as external_eval
from fer_pipeline.core.evaluation.dataset_identity import split_sizes
from fer_pipeline.core.evaluation.metrics import HEADLINE_KEYS
from fer_pipeline.core.evaluation.split import evaluate_split
from fer_pipeline.core.ingestion.dataset import class_names
from fer_pipeline.core.models import save_model
from fer_pipeline.core.training.job import train_resnet
from fer_pipeline.files import file_info, write_csv, write_json
from fer_pipeline.params import apply_sets, load_parameters
from fer_pipeline.project import project_root
from fer_pipeline.runner.dataset_loading import load_dataset, resolve_data, subset_dataset, write_npz
from fer_pipeline.runner.results import draw_figures, results_table
from fer_pipeline.runner import model_transport, throughput

log = logging.getLogger("fer_pipeline.runner.run")

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


def _stop_on_signal(signum: int, frame: Any) -> None:
    global _terminating
    _terminating = True
    sys.exit(128 + signum)


def default_paths() -> dict[str, Path]:
    """The project's conf/base and the git-ignored scratch and output folders under build/."""
    root = project_root()
    return {"conf": root / "conf" / "base", "work": root / "build" / "gpu_work", "out": root / "build" / "gpu_out",
            "root": root}


# ============================================================================================
# Timing and logging
# ============================================================================================

class StageTimer:
    """Wall-clock seconds and peak GPU memory of each stage."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stages: dict[str, dict[str, Any]] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[dict[str, Any]]:
        record: dict[str, Any] = {}
        synchronize(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        log.info("---- stage %s", name)
        start = time.perf_counter()
        try:
            yield record
        finally:
            synchronize(self.device)
            record["seconds"] = time.perf_counter() - start
            if self.device.type == "cuda":
                record["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
                record["peak_gpu_reserved_mb"] = torch.cuda.max_memory_reserved(self.device) / 2**20
            self.stages[name] = record
            log.info("---- stage %s: %.2f s", name, record["seconds"])

    def value(self, stage: str, key: str) -> Any:
        return self.stages.get(stage, {}).get(key)


def device_summary(device: torch.device) -> dict[str, Any]:
    """The machine: device, library versions, CPU count, GPU properties."""
    import torchvision

    info: dict[str, Any] = {
        "device": str(device), "torch": torch.__version__, "torchvision": torchvision.__version__,
        "numpy": np.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, total_memory_mb=props.total_memory / 2**20,
                    multiprocessors=props.multi_processor_count, capability=f"{props.major}.{props.minor}",
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    else:
        info["name"] = platform.processor() or platform.machine()
    return info


def setup_logging(log_file: Path | None, mode: str = "w") -> None:
    """INFO to stdout and ``log_file``; replaces only the handlers an earlier call added."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        if getattr(handler, "_fer_runner", False):
            root.removeHandler(handler)
            handler.close()
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file, mode=mode, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler._fer_runner = True
        root.addHandler(handler)


# ============================================================================================
# The run: one function per stage, each recording into ``run.metrics``
# ============================================================================================

class PipelineRun:
    """One run's state: parameters, folders, the timer and the ``metrics.json`` record."""

    def __init__(self, params: dict[str, Any], data: Path, out: Path, work: Path, device: torch.device,
                 argv: list[str]) -> None:
        self.params, self.data, self.out, self.work, self.device = params, data, out, work, device
        self.timer = StageTimer(device)
        self.metrics: dict[str, Any] = {
            "script": "scripts/gpu_pipeline.py", "argv": argv,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "status": "running",
            "device": device_summary(device), "parameters": params, "stages": self.timer.stages,
        }

    def save(self, status: str | None = None) -> None:
        if status:
            self.metrics["status"] = status
        write_json(self.out / "metrics.json", self.metrics)


def run_ingestion(run: PipelineRun, subset: int | None) -> dict[str, np.ndarray]:
    with run.timer("ingestion") as stage:
        dataset, report = load_dataset(run.data, run.params["ingestion"], run.work)
        if subset:
            dataset = subset_dataset(dataset, subset, run.params["ingestion"]["seed"])
        stage["images_read"] = int(report.get("read", len(dataset["labels"])))
        stage["images_kept"] = int(len(dataset["labels"]))
    decode_seconds = stage["seconds"] - report.get("extract_seconds", 0.0)
    stage["images_per_s"] = stage["images_read"] / decode_seconds if decode_seconds > 0 else None
    report["split_sizes"] = split_sizes(dataset)
    run.metrics["ingestion"] = report
    log.info("dataset: %s (decoder: %s)", report["split_sizes"], report.get("decoder"))
    run.save()
    with run.timer("class_balance"):
        summary, table = class_balance_summary(dataset, run.params["class_balance"])
        run.metrics["class_balance"] = {**summary, "table": table}
    run.save()
    return dataset


def run_autoencoder(run: PipelineRun, dataset: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The autoencoder (and its twin), then latent SMOTE: the synthetic faces."""
    params = run.params["autoencoder"]
    with run.timer("autoencoder") as stage:
        result = train_autoencoder(dataset, params, on_epoch=autoencoder_epoch_logger(params))
        stage["images_per_s"] = statistics.median(h["images_per_s"] for h in result.history)
        stage["epochs"] = params["epochs"] * (2 if result.twin_history is not None else 1)
    save_autoencoder(run.work / "autoencoder.pt", result.model)
    run.metrics["autoencoder"] = {"config": result.config.to_dict(), "history": result.history,
                                  "reconstruction_error": result.errors}
    if result.twin_history is not None:
        run.metrics["autoencoder"]["twin_history"] = result.twin_history
    run.save()
    with run.timer("oversampling") as stage:
        synthetic, info = oversample(dataset, result.model, params)
        stage["synthetic_images"] = int(len(synthetic["labels"]))
    run.metrics["oversampling"] = info
    run.save()
    return synthetic


def run_training(run: PipelineRun, dataset: Mapping[str, np.ndarray], synthetic: Mapping[str, np.ndarray]):
    """The training set, then the ResNet: the training result (best epoch on val)."""
    with run.timer("augmentation"):
        training_set, info = assemble_training_set(dataset, synthetic, run.params["augmentation"])
    run.metrics["augmentation"] = info
    run.save()
    history: list[dict[str, Any]] = []

    def on_epoch(epoch: int, row: dict[str, Any]) -> None:
        history.append(row)
        run.metrics["training"] = {"epochs_done": len(history), "last_epoch": row}
        run.save()

    with run.timer("training") as stage:
        result = train_resnet(training_set, dataset, run.params["training"], run.params["augmentation"],
                                     on_epoch)
    rates = [row["images_per_s"] for row in result.history]
    steady = rates[1:] or rates
    stage["images_per_s_median"] = statistics.median(steady) if steady else None
    stage["epochs_run_here"] = len(result.history) - (result.resumed_from_epoch or 0)
    save_model(run.work / "resnet34.pt", result.model, result.config)
    run.metrics["training"] = {
        "best_epoch": result.best_epoch, "best_val_metrics": result.best_metrics,
        "select_metric": result.train_config["select_metric"], "epochs_run": len(result.history),
        "resumed_from_epoch": result.resumed_from_epoch, "stopped_early": result.stopped_early,
        "train_images": int(len(training_set["labels"])), "synthetic_images": int(training_set["synthetic"].sum()),
        "device_info": result.device_info, "train_config": result.train_config, "model_config": result.config,
        "epoch_seconds_total": float(sum(row["epoch_seconds"] for row in result.history)),
        "images_per_s_median": stage["images_per_s_median"],
    }
    write_csv(run.out / "history.csv", result.history)
    run.save()
    return result


def run_evaluation(run: PipelineRun, result, dataset: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """val and test, without and with ten-crop TTA (and the parameters' mode if it is another);
    the TTA mode is chosen on val. Returns the no-TTA logits per split."""
    modes = list(dict.fromkeys(("none", "ten_crop", run.params["evaluate"]["tta"])))
    evaluation: dict[str, dict[str, Any]] = {"val": {}, "test": {}}
    logits: dict[str, np.ndarray] = {}
    with run.timer("evaluation") as stage:
        for split in ("val", "test"):
            for tta in modes:
                scored = evaluate_split(result.model, result.config, dataset, split, tta,
                                               run.params["evaluate"])
                evaluation[split][tta] = scored.report
                if tta == "none":
                    logits[split] = scored.logits
        stage["images_per_s"] = {tta: evaluation["test"][tta]["images_per_s"] for tta in modes}
    select_metric = result.train_config["select_metric"]
    tta_on_val = max(modes, key=lambda t: evaluation["val"][t][select_metric])
    run.metrics["evaluation"] = evaluation
    run.metrics["selection"] = {
        "split": "val", "fer_split": SPLIT_TO_FER_NAME["val"], "metric": select_metric,
        "best_epoch": result.best_epoch, "tta_selected_on_val": tta_on_val,
        "test_used_for": "reporting only (evaluated after the model and the TTA mode were chosen)",
    }
    headline = {f"{split}_{tta}_{key}": evaluation[split][tta][key]
                for split in ("val", "test") for tta in modes for key in HEADLINE_KEYS}
    for tta in modes:  # the canonical PrivateTest without copies of training images (None: none there)
        clean = evaluation["test"][tta]["without_leaked_duplicates"]
        for key in HEADLINE_KEYS:
            headline[f"test_{tta}_without_leaked_{key}"] = clean[key] if clean else None
    run.metrics["headline"] = {**headline, "parameters_tta": run.params["evaluate"]["tta"],
                               "tta_selected_on_val": tta_on_val}
    run.metrics["throughput"] = {
        "train_images_per_s_median": run.timer.value("training", "images_per_s_median"),
        "autoencoder_images_per_s_median": run.timer.value("autoencoder", "images_per_s"),
        "inference_images_per_s": run.timer.value("evaluation", "images_per_s"),
        "ingestion_images_per_s": run.timer.value("ingestion", "images_per_s"),
    }
    _write_tables(run.out, evaluation, modes)
    run.metrics["files"] = {"model": file_info(run.work / "resnet34.pt"),
                            "autoencoder": file_info(run.work / "autoencoder.pt")}
    run.save()
    return logits


def _write_tables(out: Path, evaluation: Mapping[str, Mapping[str, Any]], modes: list[str]) -> None:
    write_csv(out / "per_class.csv", [
        {"split": split, "fer_split": SPLIT_TO_FER_NAME[split], "tta": tta, **row}
        for split in ("val", "test") for tta in modes for row in evaluation[split][tta]["per_class"]
    ])
    write_csv(out / "confusion.csv", [
        {"split": split, "fer_split": SPLIT_TO_FER_NAME[split], "tta": tta, "true_class": report["classes"][i],
         **{f"pred_{name}": count for name, count in zip(report["classes"], row)}}
        for split in ("val", "test") for tta in modes
        for report in [evaluation[split][tta]] for i, row in enumerate(report["confusion"])
    ])


def run_external_evaluation(run: PipelineRun, result) -> None:
    """``evaluate.external_sets`` (``core.external_eval``), when any: ``metrics.json``'s
    ``external`` reports and their flat ``eval.external.<name>.*`` values (``external_headline``)."""
    evaluate = run.params["evaluate"]
    if not evaluate.get("external_sets"):
        return
    with run.timer("external_evaluation"):
        reports = external_eval.evaluate_external_sets(
            result.model, result.config, evaluate["external_sets"], tta=evaluate["tta"],
            batch_size=evaluate["batch_size"], device=evaluate.get("device", "auto"),
            margin=run.params["predict"]["margin"], amp=evaluate.get("amp", "auto"))
    run.metrics["external"] = reports
    run.metrics["external_headline"] = external_eval.flat_metrics(reports)
    run.save()


def run_export(run: PipelineRun, result, dataset: Mapping[str, np.ndarray], logits: Mapping[str, np.ndarray],
               part_bytes: int) -> None:
    with run.timer("model_export"):
        run.metrics["returned_model"] = model_transport.export_returned_model(
            result.model, result.config, dataset, run.params["evaluate"], run.work, run.out, part_bytes, logits)
    run.metrics["files"]["returned_model"] = run.metrics["returned_model"]["file"]
    run.save()


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
    torch.backends.cudnn.benchmark = True  # as training does (core.train, not deterministic)
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


def run_pipeline(args: argparse.Namespace, params: dict[str, Any], argv: list[str]) -> dict[str, Any]:
    """Every stage in order; ``metrics.json`` says how far it got if a stage fails or is killed."""
    started = time.perf_counter()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    setup_logging(out / "pipeline.log")
    checkpoint_dir = work / "checkpoints" / "pipeline"
    if args.fresh:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        (work / EPOCH_FIT_FILE).unlink(missing_ok=True)
    params["training"]["config"]["checkpoint_dir"] = checkpoint_dir.as_posix()
    data = Path(args.data) if args.data else default_paths()["root"] / params["ingestion"]["source_path"]
    votes = params["ingestion"].get("ferplus_votes_path")
    if votes:  # relative to the project, as source_path
        params["ingestion"]["ferplus_votes_path"] = (default_paths()["root"] / votes).as_posix()
    run = PipelineRun(params, data, out, work, resolve_device(params["training"]["config"]["device"]), argv)
    run.metrics["subset_per_split"] = args.subset
    log.info("device: %s", run.metrics["device"])
    # A command stopped at its time limit gets SIGTERM: leave a metrics.json that says where.
    signal.signal(signal.SIGTERM, _stop_on_signal)
    external_eval.parse_external_sets(params["evaluate"].get("external_sets"))  # typos: before anything runs
    try:
        dataset = run_ingestion(run, args.subset)
        # the rest of what can go wrong with them, before hours of training (the model's classes are the dataset's)
        external_eval.check_external_sets(params["evaluate"].get("external_sets"), class_names(dataset))
        if args.save_dataset:
            write_npz(args.save_dataset, dataset)
        synthetic = run_autoencoder(run, dataset)
        if args.naive_baseline_steps > 0 or args.deadline_s:
            run_naive_baseline(run, args.naive_baseline_steps, args.naive_workers, args.compile_probe_steps)
        if args.deadline_s:
            fit_training_epochs(run, dataset, synthetic, args.deadline_s - (time.perf_counter() - started),
                                args.reserve_s)
        result = run_training(run, dataset, synthetic)
        logits = run_evaluation(run, result, dataset)
        run_export(run, result, dataset, logits, int(args.part_mib * 2**20))
        run_external_evaluation(run, result)
        if args.resume_check_steps > 0:
            run_resume_check(run, dataset, args.resume_check_steps)
    except BaseException as exc:
        stage = list(run.timer.stages)[-1] if run.timer.stages else "setup"
        run.save(f"failed in stage {stage}: {type(exc).__name__}: {exc}")
        raise
    run.metrics["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    run.save("complete")
    print(results_table(run.metrics), flush=True)
    return run.metrics


# ============================================================================================
# Command line
# ============================================================================================

def effective_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """conf (or --params-json) <- --set <- the shortcut flags."""
    if args.params_json:
        params = json.loads(Path(args.params_json).read_text(encoding="utf-8"))
    else:
        params = load_parameters(args.conf)
    params = apply_sets(params, args.set)
    if args.epochs is not None:
        params["training"]["config"]["epochs"] = args.epochs
    if args.ae_epochs is not None:
        params["autoencoder"]["epochs"] = args.ae_epochs
    if args.duplicates is not None:
        params["ingestion"]["duplicates"] = args.duplicates
    if args.device is not None:
        for section in (params["training"]["config"], params["autoencoder"], params["evaluate"]):
            section["device"] = args.device
    return params


def build_parser() -> argparse.ArgumentParser:
    paths = default_paths()
    parser = argparse.ArgumentParser(
        prog="gpu_pipeline.py", description="The default FER pipeline without Kedro/MLflow (GPU machine).",
        epilog="GPU: PYTHONUNBUFFERED=1 PYTHONPATH=src python3 scripts/gpu_pipeline.py --data .gpu_data/fer2013.tar.gz "
               "--out $OUT --naive-baseline-steps 200",
    )
    add = parser.add_argument
    add("--data", help="FER2013 folder / fer2013.csv / archive of one (.tar.gz, .zip) / fer_dataset.npz "
                       "(default: ingestion.source_path)")
    add("--out", default=os.environ.get("OUT") or str(paths["out"]),
        help="output folder (default $OUT, else build/gpu_out, which git ignores)")
    add("--work", default=str(paths["work"]),
        help="scratch folder: extracted archives, training checkpoints (default build/gpu_work)")
    add("--conf", default=str(paths["conf"]), help="folder of parameters*.yml (default conf/base)")
    add("--params-json", help="read the parameters from this JSON (see --dump-params) instead")
    add("--dump-params", metavar="FILE", help="write the effective parameters as JSON and exit")
    add("--set", action="append", metavar="KEY=VALUE",
        help="override a parameter, e.g. training.config.lr=0.05 (repeatable; VALUE in YAML flow syntax)")
    add("--epochs", type=int, help="training.config.epochs")
    add("--ae-epochs", type=int, help="autoencoder.epochs")
    add("--subset", type=int, help="keep at most N images per split (stratified): smoke runs")
    add("--duplicates", choices=("keep", "drop_leaked"), help="ingestion.duplicates")
    add("--device", help="device of every stage (default: the parameters' 'auto')")
    add("--fresh", action="store_true", help="ignore (delete) training checkpoints in --work")
    add("--naive-baseline-steps", type=int, default=0,
        help="also time the naive JPEG DataLoader path vs the fast path, N steps each")
    add("--naive-workers", type=int, default=throughput.default_workers(),
        help="DataLoader workers of the naive path (default min(8, cores))")
    add("--compile-probe-steps", type=int, default=0,
        help="also time the fast path under torch.compile, N steps (its warm-up = the compile time)")
    add("--deadline-s", type=float,
        help="seconds this command may take: the training's epochs are cut (never raised) to end --reserve-s "
             "before, sized by the fast path's measured images/s (measured before training)")
    add("--reserve-s", type=float, default=60.0,
        help="with --deadline-s: seconds kept for evaluation, export and what follows training (default 60)")
    add("--resume-check-steps", type=int, default=0,
        help="after the export, check resumption on this device: 3 epochs of N steps, stopped after one and "
             "resumed, against the same run uninterrupted (fer_pipeline.runner.resume_check)")
    add("--save-dataset", metavar="NPZ", help="also write the ingested dataset there (the ablation's --data)")
    add("--threads", type=int, help="torch CPU threads")
    add("--part-mib", type=float, default=15.0, help="largest part of the returned float16 model, MiB")
    add("--assemble-model", nargs=2, metavar=("FOLDER", "DEST"),
        help="join the returned model parts in FOLDER into DEST (sha256 checked) and exit")
    add("--figures", nargs=2, metavar=("FOLDER", "DEST_DIR"),
        help="draw the training curves and PrivateTest confusion matrices of a returned FOLDER into DEST_DIR "
             "(needs matplotlib) and exit")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``scripts/gpu_pipeline.py``: run the pipeline, or assemble / draw a returned folder."""
    args = build_parser().parse_args(argv)
    if args.assemble_model or args.figures:
        try:
            if args.assemble_model:
                print(model_transport.assemble_model(Path(args.assemble_model[0]), Path(args.assemble_model[1])))
            if args.figures:
                for path in draw_figures(Path(args.figures[0]), Path(args.figures[1])):
                    print(f"wrote {path}")
        except (ValueError, FileNotFoundError) as exc:
            raise SystemExit(f"gpu_pipeline.py: {exc}") from None
        return {}
    params = effective_parameters(args)
    if args.dump_params:
        Path(args.dump_params).write_text(json.dumps(params, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.dump_params}")
        return params
    if args.threads:
        torch.set_num_threads(args.threads)
    return run_pipeline(args, params, sys.argv[1:] if argv is None else list(argv))
