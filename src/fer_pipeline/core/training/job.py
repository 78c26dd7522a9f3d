"""Training in N worker processes on this machine, through PyTorch's elastic launcher.

``train_in_workers`` is what ``training.distributed.nproc_per_node: N`` (N > 1) runs in place of
``core.training.loop.train_classifier``: it writes the run's inputs to a job folder once, starts N
workers with ``torch.distributed.launcher.api.elastic_launch`` (the engine behind ``torchrun``,
not a launcher of ours), each of which joins the process group and calls ``train_classifier``
as one rank (``run_job``), and reads back rank 0's result. The caller's process takes no part
in the training, so ``kedro run``, MLflow and the catalog stay in one process.

A worker that fails (an exception, a signal, a lost process) makes the launcher stop the others
and the call raise ``DistributedTrainingError`` with the rank and its error; a worker that stops
answering fails the others after ``timeout_s``. Nothing hangs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.distributed.elastic.multiprocessing.errors import record

from fer_pipeline.core.config import reject_unknown_keys
from fer_pipeline.core.evaluation.dataset_identity import training_data_record
from fer_pipeline.core.ingestion.dataset import Dataset, class_names
from fer_pipeline.core.models import build_model
from fer_pipeline.core.training import checkpoint
from fer_pipeline.core.training.config import TrainConfig, TrainResult
from fer_pipeline.core.training.distributed import (
    DistributedConfig,
    backend_for,
    check_global_batch,
    in_worker,
    init_from_env,
    shutdown,
    worker_device,
)
from fer_pipeline.core.training.loop import train_classifier
from fer_pipeline.core.training.setup import as_targets

log = logging.getLogger(__name__)

JOB_INPUTS = "inputs.npz"
JOB_SPEC = "job.json"
JOB_RESULT = "result.pt"


class DistributedTrainingError(RuntimeError):
    """A training worker failed; the message names its rank and its error."""


def write_job(
    folder: str | os.PathLike, train_images: np.ndarray, train_labels: np.ndarray, val_images: np.ndarray,
    val_labels: np.ndarray, class_counts: np.ndarray | list[int], model_cfg: Mapping[str, Any],
    train_cfg: TrainConfig | Mapping[str, Any], augment_policy: Mapping[str, Any] | None,
) -> Path:
    """``train_classifier``'s arguments as a folder: the arrays in ``inputs.npz``, the rest in
    ``job.json`` (plain JSON: a worker reads no pickle)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = train_cfg.to_dict() if isinstance(train_cfg, TrainConfig) else dict(train_cfg)
    np.savez(folder / JOB_INPUTS, train_images=train_images, train_labels=as_targets(train_labels),
             val_images=val_images, val_labels=np.asarray(val_labels, np.int64),
             class_counts=np.asarray(class_counts, np.int64))
    spec = {"model_cfg": dict(model_cfg), "train_cfg": cfg,
            "augment_policy": dict(augment_policy) if augment_policy else None}
    (folder / JOB_SPEC).write_text(json.dumps(spec, indent=1), encoding="utf-8")
    return folder


@record  # the worker's exception reaches the launcher, which names it in DistributedTrainingError
def run_job(folder: str, backend: str = "auto", timeout_s: float = 1800.0) -> None:
    """One worker (rank) of the job in ``folder``: join the group, train, and on rank 0 write
    ``result.pt``. The entry point ``elastic_launch`` starts in every worker."""
    folder_path = Path(folder)
    spec = json.loads((folder_path / JOB_SPEC).read_text(encoding="utf-8"))
    world = init_from_env(spec["train_cfg"].get("device", "auto"), backend, timeout_s)
    configure_worker_logging(world.rank)
    _share_cpu_threads()
    try:
        with np.load(folder_path / JOB_INPUTS) as inputs:
            arrays = {key: inputs[key] for key in inputs.files}
        result = train_classifier(
            arrays["train_images"], arrays["train_labels"], arrays["val_images"], arrays["val_labels"],
            arrays["class_counts"], spec["model_cfg"], spec["train_cfg"], spec["augment_policy"],
            progress=world.is_main,
        )
        if world.is_main:
            checkpoint.atomic_save(_result_payload(result), folder_path / JOB_RESULT)
    finally:
        shutdown()


def read_result(folder: str | os.PathLike) -> TrainResult:
    """Rank 0's ``TrainResult`` from ``folder``; the model rebuilt on the CPU, in eval mode."""
    payload = torch.load(Path(folder) / JOB_RESULT, map_location="cpu", weights_only=True)
    model = build_model(payload["config"])  # the model file's config: what was trained, as trained
    model.load_state_dict(payload.pop("state_dict"))
    return TrainResult(model=model.eval(), **payload)


def launch(entrypoint: Callable[..., Any], args: tuple, distributed: DistributedConfig) -> dict[int, Any]:
    """Run ``entrypoint(*args)`` in ``nproc_per_node`` workers on this machine (a
    ``torchrun --standalone`` equivalent: c10d rendezvous on a free loopback port, no restarts);
    the return values by rank. A failed worker raises ``DistributedTrainingError``."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    with tempfile.TemporaryDirectory(prefix="fer-workers-") as log_dir:
        config = LaunchConfig(
            min_nodes=1, max_nodes=1, nproc_per_node=distributed.nproc_per_node,
            run_id=f"fer-{uuid.uuid4().hex[:12]}", rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0",
            local_addr="127.0.0.1", max_restarts=0, monitor_interval=distributed.monitor_interval_s,
            start_method="spawn", logs_specs=DefaultLogsSpecs(log_dir=log_dir),
        )
        try:
            with _loopback_only():
                return elastic_launch(config, entrypoint)(*args)
        except ChildFailedError as exc:
            raise DistributedTrainingError(_failure_message(exc, Path(log_dir))) from None


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """Workers on this machine talk over the loopback interface only: gloo (and NCCL's bootstrap)
    otherwise bind to whatever address the host name resolves to."""
    names = ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")
    saved = {name: os.environ.get(name) for name in names}
    if sys.platform.startswith("linux"):
        for name in names:
            os.environ.setdefault(name, "lo")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def train_in_workers(
    train_images: np.ndarray, train_labels: np.ndarray, val_images: np.ndarray, val_labels: np.ndarray,
    class_counts: np.ndarray | list[int], model_cfg: Mapping[str, Any], train_cfg: TrainConfig | Mapping[str, Any],
    augment_policy: Mapping[str, Any] | None, distributed: DistributedConfig,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """``train_classifier`` run by ``distributed.nproc_per_node`` worker processes (data-parallel,
    the same global batch). ``on_epoch`` is called once the workers are done, for every epoch's
    history row (the workers cannot call back into this process)."""
    if in_worker():
        raise RuntimeError("already a training worker: call train_classifier, not train_in_workers")
    cfg = train_cfg if isinstance(train_cfg, TrainConfig) else TrainConfig.from_dict(train_cfg)
    # What every worker would refuse, refused before N of them start.
    check_global_batch(min(cfg.batch_size, len(train_images)), distributed.nproc_per_node)
    if len(val_images) < distributed.nproc_per_node:
        raise ValueError(f"val: {len(val_images)} images for {distributed.nproc_per_node} training processes "
                         f"(need one each)")
    backend = backend_for(worker_device(cfg.device, distributed.nproc_per_node - 1), distributed.backend)
    with tempfile.TemporaryDirectory(prefix="fer-training-job-") as folder:
        write_job(folder, train_images, train_labels, val_images, val_labels, class_counts, model_cfg, train_cfg,
                  augment_policy)
        log.info("training in %d worker processes (%s backend)", distributed.nproc_per_node, backend)
        launch(run_job, (folder, distributed.backend, distributed.timeout_s), distributed)
        result = read_result(folder)
    if on_epoch is not None:
        for row in result.history:
            on_epoch(int(row["epoch"]), dict(row))
    return result


def _result_payload(result: TrainResult) -> dict[str, Any]:
    """Every ``TrainResult`` field, the model as its CPU state dict (a weights_only file)."""
    payload = {f.name: getattr(result, f.name) for f in dataclasses.fields(TrainResult) if f.name != "model"}
    return {**payload, "state_dict": checkpoint.cpu_state(result.model)}


#: what a rank says when another one went away: the symptom, not the cause
PEER_FAILURE_SIGNS = ("connection reset by peer", "connection closed by peer", "broken pipe",
                      "nccl communicator was aborted", "wait timeout", "timed out after", "timed out waiting",
                      "collective operation timeout")


def _failure_message(exc: Exception, log_dir: Path) -> str:
    """'training worker rank R failed: <its error>' for the rank that caused the failure.

    Every failed rank's own error (``@record`` writes it, with a timestamp, under the launcher's
    log folder) is read. The cause is the earliest error that is not a peer's symptom (a reset
    connection, a collective's timeout); when all are symptoms, the message says that another
    rank stopped answering. Without error files, the launcher's own record."""
    errors = []
    for path in sorted(log_dir.glob("**/error.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        message = record.get("message", record)
        timestamp = 0
        if isinstance(message, dict):
            stamp = str((message.get("extraInfo") or {}).get("timestamp", "0"))
            timestamp = int(stamp) if stamp.isdigit() else 0
            message = message.get("message", message)
        message = str(message).strip()
        rank = int(path.parent.name) if path.parent.name.isdigit() else -1
        symptom = any(sign in message.lower() for sign in PEER_FAILURE_SIGNS)
        errors.append((symptom, timestamp, rank, message))
    if errors:
        errors.sort()
        symptom, _, rank, message = errors[0]
        others = f" ({len(errors) - 1} other rank(s) failed after it)" if len(errors) > 1 else ""
        hint = (" - a symptom: another rank stopped answering (hung, or killed without an error of its own)"
                if symptom else "")
        return f"training worker rank {rank} failed{others}: {message}{hint}"
    failures = getattr(exc, "failures", {}) or {}
    if not failures:
        return str(exc)
    rank, failure = sorted(failures.items())[0]
    return f"training worker rank {rank} failed (pid {failure.pid}, exit code {failure.exitcode}): {failure.message}"


def configure_worker_logging(rank: int) -> None:
    """Rank 0 logs progress; the others only warnings (N copies of each line help nobody). Each
    line says its rank."""
    # force: torch's elastic agent and Kedro's project import (in a worker of `kedro run`) have
    # already given the root logger handlers, and basicConfig alone would then do nothing.
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, force=True,
                        format=f"[rank {rank}] %(levelname)s %(name)s: %(message)s")


def _share_cpu_threads() -> None:
    """Split the cores between the workers of this machine unless OMP_NUM_THREADS says otherwise
    (torchrun's command line sets it to 1; its API does not)."""
    if "OMP_NUM_THREADS" not in os.environ:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores // local))


#: The groups of params:training (each group is then checked by its own config class).
TRAINING_KEYS = ("model", "config", "distributed")



def train_resnet(
    training_set: Dataset,
    dataset: Dataset,
    training_params: Mapping[str, Any],
    augmentation_params: Mapping[str, Any],
    on_epoch: Callable[[int, dict], None] | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train on ``training_set``, keep the best epoch by the val split's metric. The result's
    ``config`` is the model file's (with the dataset's class names); ``train_config`` the
    training parameters as run; ``config["training_data"]`` identifies ``dataset``
    (``core.evaluation.dataset_identity``). The test split is never passed to the trainer.

    ``training_params["distributed"]["nproc_per_node"]`` > 1 trains in that many worker processes
    (``core.training.job``, data-parallel with the same global batch); inside a torchrun worker
    (``fer-train``) this process is one rank of the job."""
    reject_unknown_keys(training_params, TRAINING_KEYS, "training")
    classes = class_names(dataset)
    val = dataset["splits"] == "val"
    if not val.any():
        raise ValueError("the dataset has no validation split: model selection needs one")
    train_cfg = {**training_params["config"], "sampler": augmentation_params["sampler"]}
    model_cfg = {**training_params["model"], "num_classes": len(classes), "classes": classes}
    counts = np.bincount(training_set["labels"], minlength=len(classes))
    # Soft targets (FER+ vote distributions) when the training set has them, else the class labels.
    targets = training_set["targets"] if "targets" in training_set else training_set["labels"]
    inputs = (training_set["images"], targets, dataset["images"][val], dataset["labels"][val],
              counts, model_cfg, train_cfg, augmentation_params["policy"])
    distributed = DistributedConfig.from_dict(training_params.get("distributed"))
    if distributed.nproc_per_node > 1 and not in_worker():
        result = train_in_workers(*inputs, distributed, on_epoch=on_epoch)
    else:  # one process, or one rank of a torchrun job (fer-train)
        result = train_classifier(*inputs, on_epoch=on_epoch, progress=progress)
    # Evaluation checks it: a model is scored on the dataset it was trained on unless told otherwise.
    result.config["training_data"] = training_data_record(dataset)
    return result

