"""The whole default pipeline without Kedro or MLflow: ``scripts/gpu_pipeline.py``'s engine.

Its stages are the Kedro nodes' own functions (``fer_pipeline.core.<stage>``), with the same parameters,
read from ``conf/base/parameters_*.yml`` (``fer_pipeline.params``):

    ingestion -> class balance -> autoencoder (+ unweighted twin) -> latent-SMOTE oversampling
    [-> naive DataLoader baseline vs the fast path, and the fast path under torch.compile
        (``fer_pipeline.runner.throughput``); with --deadline-s the epochs cut to fit from its img/s]
    -> augmentation (training set) -> ResNet-34 training (selected on PublicTest = val)
    -> evaluation as the evaluate node scores (``core.evaluation.protocol``; with
       ``--set evaluate.tta=choose_on_val``, as scripts/gpu_session.sh runs it: PublicTest and
       PrivateTest under each of ``evaluate.tta_candidates``, the mode chosen on PublicTest)
    -> the returned float16 model (``fer_pipeline.runner.model_transport``)
    [-> external sets] [-> the resumption check on this device (``fer_pipeline.runner.resume_check``)]

The test split is read only by the evaluation stage, after the model is chosen: training sees
train + val, the best epoch is picked on val, and the TTA mode (when chosen) on val too.

Needs torch, torchvision, numpy, Pillow, PyYAML and scikit-learn; not kedro, mlflow, pandas,
matplotlib or OpenCV (without OpenCV ingestion decodes with Pillow: identical pixels on
FER2013's JPEGs). ``metrics.json`` (everything, rewritten after every stage), ``per_class.csv``,
``confusion.csv``, ``history.csv`` and ``pipeline.log`` go to ``--out``; the float32 model, the
autoencoder and the training checkpoints stay in ``--work``, so a command stopped at a time
limit resumes where it stopped when run again on the same machine.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import statistics
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from fer_pipeline.core.augmentation.training_set import assemble_training_set
from fer_pipeline.core.autoencoder.network import save_autoencoder
from fer_pipeline.core.autoencoder.oversampling import oversample
from fer_pipeline.core.autoencoder.training import autoencoder_epoch_logger, train_autoencoder
from fer_pipeline.core.class_balance.summary import class_balance_summary
from fer_pipeline.core.classes import SPLIT_TO_FER_NAME
from fer_pipeline.core.device import resolve_device
from fer_pipeline.core.evaluation import external_sets as external_eval
from fer_pipeline.core.evaluation.dataset_identity import split_sizes
from fer_pipeline.core.evaluation.metrics import HEADLINE_KEYS
from fer_pipeline.core.evaluation.protocol import evaluate_model
from fer_pipeline.core.ingestion.dataset import class_names
from fer_pipeline.core.models import save_model
from fer_pipeline.core.training.job import train_resnet
from fer_pipeline.core.training.summary import training_summary
from fer_pipeline.files import file_info, write_csv
from fer_pipeline.runner import model_transport
from fer_pipeline.runner.dataset_loading import load_dataset, subset_dataset, write_npz
from fer_pipeline.runner.measurements import (
    EPOCH_FIT_FILE,
    fit_training_epochs,
    run_naive_baseline,
    run_resume_check,
    stop_on_signal,
)
from fer_pipeline.runner.records import PipelineRun, default_paths, setup_logging
from fer_pipeline.runner.results import results_table

log = logging.getLogger("fer_pipeline.runner")


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
    run.metrics["training"] = {**training_summary(result, training_set), "model_config": result.config,
                               "images_per_s_median": stage["images_per_s_median"]}
    run.metrics["files"] = {"model": file_info(run.work / "resnet34.pt"),
                            "autoencoder": file_info(run.work / "autoencoder.pt")}
    write_csv(run.out / "history.csv", result.history)
    run.save()
    return result


def run_evaluation(run: PipelineRun, result, dataset: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The evaluate stage's protocol (``core.evaluation.protocol``), with the evaluate parameters
    ``kedro run`` gets: ``evaluate.tta: choose_on_val`` scores val and test with each candidate
    mode and reports test under the mode chosen on val. Returns the no-TTA logits per split."""
    evaluate = run.params["evaluate"]
    with run.timer("evaluation") as stage:
        protocol = evaluate_model(result.model, result.config, dataset, evaluate)
        stage["images_per_s"] = {tta: report["images_per_s"]
                                 for tta, report in protocol.reports[evaluate["split"]].items()}
    evaluation = protocol.reports
    run.metrics["evaluation"] = evaluation
    chosen_on_val = protocol.tta if protocol.selection else None
    run.metrics["selection"] = {
        "split": "val", "fer_split": SPLIT_TO_FER_NAME["val"], "metric": result.train_config["select_metric"],
        "best_epoch": result.best_epoch, "tta": protocol.tta, "tta_selected_on_val": chosen_on_val,
        "test_used_for": "reporting only (evaluated after the model and the TTA mode were chosen)",
    }
    headline = {f"{split}_{tta}_{key}": report[key]
                for split, modes in evaluation.items() for tta, report in modes.items() for key in HEADLINE_KEYS}
    for tta, report in evaluation.get("test", {}).items():  # PrivateTest without copies of training images
        clean = report["without_leaked_duplicates"]
        for key in HEADLINE_KEYS:
            headline[f"test_{tta}_without_leaked_{key}"] = clean[key] if clean else None
    run.metrics["headline"] = {**headline, "parameters_tta": evaluate["tta"], "tta_selected_on_val": chosen_on_val}
    run.metrics["throughput"] = {
        "train_images_per_s_median": run.timer.value("training", "images_per_s_median"),
        "autoencoder_images_per_s_median": run.timer.value("autoencoder", "images_per_s"),
        "inference_images_per_s": run.timer.value("evaluation", "images_per_s"),
        "ingestion_images_per_s": run.timer.value("ingestion", "images_per_s"),
    }
    _write_tables(run.out, evaluation)
    run.save()
    return protocol.plain_logits


def _write_tables(out: Path, evaluation: Mapping[str, Mapping[str, Any]]) -> None:
    write_csv(out / "per_class.csv", [
        {"split": split, "fer_split": SPLIT_TO_FER_NAME[split], "tta": tta, **row}
        for split, modes in evaluation.items() for tta, report in modes.items() for row in report["per_class"]
    ])
    write_csv(out / "confusion.csv", [
        {"split": split, "fer_split": SPLIT_TO_FER_NAME[split], "tta": tta, "true_class": report["classes"][i],
         **{f"pred_{name}": count for name, count in zip(report["classes"], row)}}
        for split, modes in evaluation.items() for tta, report in modes.items()
        for i, row in enumerate(report["confusion"])
    ])


def run_external_evaluation(run: PipelineRun, result) -> None:
    """``evaluate.external_sets`` (``core.evaluation.external_sets``), when any: ``metrics.json``'s
    ``external`` reports and their flat ``eval.external.<name>.*`` values (``external_headline``)."""
    evaluate = run.params["evaluate"]
    if not evaluate.get("external_sets"):
        return
    with run.timer("external_evaluation"):
        reports = external_eval.evaluate_external_sets(
            result.model, result.config, evaluate["external_sets"], tta=run.metrics["selection"]["tta"],
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
    signal.signal(signal.SIGTERM, stop_on_signal)
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
