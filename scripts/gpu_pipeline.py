"""The whole default FER pipeline without Kedro or MLflow, for the lent GPU machine.

Its stages are the Kedro nodes' own (``fer_pipeline.core.stages``, which the nodes in
``src/fer_pipeline/pipelines/*/nodes.py`` call too), with the same parameters, read from
``conf/base/parameters_*.yml``:

    ingestion -> class balance -> autoencoder (+ unweighted twin) -> latent-SMOTE oversampling
    -> augmentation (training set) -> ResNet-34 training (selected on PublicTest = val)
    -> evaluation on PublicTest and PrivateTest (= test), without and with ten-crop TTA
    [-> naive DataLoader baseline vs the fast path, --naive-baseline-steps]

The test split is read only by the evaluation stage, after the model is chosen: training sees
train + val, the best epoch is picked on val, and the TTA mode is picked on val too.

Needs torch, torchvision, numpy, Pillow and PyYAML (all in the GPU image), not kedro, mlflow,
pandas, sklearn, matplotlib or OpenCV: the parameter files are read with PyYAML (checked against
OmegaConf, Kedro's loader, on every parameter file by tests/test_gpu_scripts.py), metrics are
NumPy, and without OpenCV ``core.ingestion`` decodes with Pillow (identical pixels on all 35,887
FER2013 JPEGs).

GPU machine, from the repository root. Once, here: ``mkdir -p .gpu_data && tar czf
.gpu_data/fer2013.tar.gz -C ../shared/datasets fer2013`` (44 MiB; ``/.gpu_data/`` is git-ignored),
then ``device.run`` with ``carry=[".gpu_data"]`` and the command::

    PYTHONUNBUFFERED=1 python3 scripts/gpu_pipeline.py --data .gpu_data/fer2013.tar.gz --out $OUT \\
        --naive-baseline-steps 200

Here (a CPU smoke run on generated demo faces, about 10 s)::

    python -m fer_pipeline.core.demo_data /tmp/fer_demo --n-train 210 --n-test 70
    python scripts/gpu_pipeline.py --data /tmp/fer_demo --out /tmp/gpu_out --threads 1 --epochs 1 \\
        --ae-epochs 1 --set training.model.stem=imagenet --set training.config.batch_size=16 \\
        --set training.config.steps_per_epoch=3 --set autoencoder.latent_dim=16 --set autoencoder.base_channels=8

Outputs in ``--out``, 8 files, each under the device's 16 MiB return limit: the trained ResNet-34
stored in float16 (``core.models.save_model(dtype=torch.float16)``, 43 MB) and cut into
``resnet34_fp16.pt.part0`` … ``.part2`` (``--part-mib``, default 15), ``metrics.json``
(everything, rewritten after every stage; it also records the float16 copy's sha256 and its
PrivateTest/PublicTest accuracy beside the float32 model's, so the returned file is checked, not
assumed, to be the same classifier), ``per_class.csv``, ``confusion.csv``, ``history.csv``
(classifier, per epoch) and ``pipeline.log``. The float32 ``resnet34.pt`` (85 MB) and
``autoencoder.pt`` stay in ``--work`` (default ``build/gpu_work``, git-ignored) with the training
checkpoints, so a command killed at its time limit resumes where it stopped when run again on the
same machine. Back here, put the model where Kedro's catalog expects it (joins the parts, checks
the sha256, loads it)::

    python scripts/gpu_pipeline.py --assemble-model <returned folder> data/06_models/resnet34.pt
    kedro run --pipeline evaluate
    python scripts/gpu_pipeline.py --figures <returned folder> docs/gpu   # curves, confusion matrices

Parameters: ``--set training.config.lr=0.05`` (any dotted key, YAML value), the shortcuts
``--epochs``, ``--ae-epochs``, ``--duplicates``, ``--device``; ``--dump-params FILE`` writes the
effective parameters as JSON and exits; ``--params-json FILE`` reads them from such a file
instead of conf/base.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import signal
import statistics
import sys
import tarfile
import time
import types
import zipfile
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
try:
    import fer_pipeline  # noqa: F401
except ImportError:  # a bare checkout (the GPU machine): use src/ directly
    sys.path.insert(0, str(ROOT / "src"))

from fer_pipeline.core import stages  # noqa: E402
from fer_pipeline.core.classes import CLASSES, SPLITS  # noqa: E402

log = logging.getLogger("gpu_pipeline")

#: FER2013's names of our splits (the file-name prefixes).
FER_SPLIT_NAMES = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
CONF_DIR = ROOT / "conf" / "base"
DEFAULT_WORK = ROOT / "build" / "gpu_work"
DEFAULT_OUT = ROOT / "build" / "gpu_out"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


# ============================================================================================
# Parameters: conf/base/parameters_*.yml read with PyYAML (the GPU image ships it; Kedro's
# OmegaConf reads these files to the same values, which tests/test_gpu_scripts.py checks)
# ============================================================================================

def read_yaml_file(path: str | os.PathLike) -> Any:
    import yaml

    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def _value(text: str) -> Any:
    """A ``--set KEY=VALUE`` value in YAML syntax: 0.05, true, null, [0.9, 1.1], {p: 0.5}."""
    import yaml

    return yaml.safe_load(text)


def load_parameters(conf_dir: str | os.PathLike = CONF_DIR) -> dict[str, Any]:
    """Every ``parameters*.yml`` of ``conf_dir`` merged by top-level key, as Kedro does (a key
    defined in two files is an error there too)."""
    params: dict[str, Any] = {}
    for path in sorted(Path(conf_dir).glob("parameters*.yml")):
        content = read_yaml_file(path) or {}
        for key, value in content.items():
            if key in params:
                raise ValueError(f"parameter key {key!r} defined twice (again in {path.name})")
            params[key] = value
    if not params:
        raise FileNotFoundError(f"no parameters*.yml in {conf_dir}")
    return params


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``base`` with ``override`` merged in (dicts recursively, other values replaced)."""
    out = json.loads(json.dumps(base))
    for key, value in (override or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = json.loads(json.dumps(value))
    return out


def set_dotted(params: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(p, "training.config.epochs", 3)``; the parent keys must exist (typo guard)."""
    parts = key.split(".")
    node = params
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node.get(part), dict):
            raise KeyError(f"--set {key}: no parameter group {'.'.join(parts[:i + 1])!r}")
        node = node[part]
    node[parts[-1]] = value


def apply_sets(params: dict[str, Any], assignments: list[str] | None) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` strings (VALUE in YAML flow syntax) to a copy of ``params``."""
    params = deep_merge(params, {})
    for assignment in assignments or []:
        if "=" not in assignment:
            raise ValueError(f"--set needs KEY=VALUE, got {assignment!r}")
        key, raw = assignment.split("=", 1)
        set_dotted(params, key.strip(), _value(raw))
    return params


# ============================================================================================
# Data
# ============================================================================================

def _archive_name(path: Path) -> str | None:
    lowered = path.name.lower()
    return next((path.name[: -len(s)] for s in ARCHIVE_SUFFIXES if lowered.endswith(s)), None)


def resolve_data(path: str | os.PathLike, work: Path) -> Path:
    """A dataset path; an archive (.tar.gz/.tgz/.tar/.zip) is extracted once under ``work``."""
    path = Path(path)
    stem = _archive_name(path) if path.is_file() else None
    if stem is None:
        return path
    target = work / "data" / stem
    marker = work / "data" / f"{stem}.extracted"  # beside, not inside: ingestion reads every file there
    stamp = f"{path.stat().st_size}:{path.stat().st_mtime_ns}"
    if not (marker.is_file() and marker.read_text() == stamp and target.is_dir()):
        marker.unlink(missing_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        start = time.perf_counter()
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                archive.extractall(target)
        else:
            with tarfile.open(path) as archive:
                if hasattr(tarfile, "data_filter"):
                    archive.extractall(target, filter="data")
                else:  # pragma: no cover - Python without extraction filters
                    archive.extractall(target)
        marker.write_text(stamp)
        log.info("extracted %s into %s in %.1f s", path, target, time.perf_counter() - start)
    entries = list(target.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else target


def load_dataset(
    data: str | os.PathLike, params: Mapping[str, Any], work: Path
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The canonical dataset (``core.stages.build_dataset``, as the ingestion node) and a
    compact quality report.

    ``data``: anything ``core.ingestion.ingest`` reads (FER folder, fer2013.csv, ImageFolder),
    an archive of one, or a canonical ``fer_dataset.npz`` (Kedro's ingestion output; no decode).
    """
    path = Path(data)
    if path.suffix == ".npz" and path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            dataset = {k: stored[k] for k in ("images", "labels", "splits", "source_ids", "classes")}
        report = {"source_kind": "npz", "source_path": path.as_posix(), "decoder": "none (pre-ingested .npz)",
                  "kept": int(len(dataset["labels"]))}
        return dataset, report

    from fer_pipeline.core.ingestion import _opencv

    cv2 = _opencv()  # without OpenCV, core.ingestion decodes with Pillow (identical FER2013 pixels)
    decoder_used = f"opencv {cv2.__version__}" if cv2 is not None else "pillow"

    start = time.perf_counter()
    root = resolve_data(path, work)
    extract_seconds = time.perf_counter() - start
    dataset, full = stages.build_dataset(root, params)
    report = {key: full[key] for key in ("source_kind", "read", "kept", "quarantined", "consistent", "counts",
                                         "totals", "reasons")}
    report["duplicates"] = {k: v for k, v in full["duplicates"].items() if k != "examples"}
    report["quarantine_examples"] = full["quarantine"][:20]
    report["warnings"] = full["warnings"][:20]
    report["source_path"] = root.as_posix()
    report["decoder"] = decoder_used
    report["extract_seconds"] = extract_seconds  # 0 unless an archive was extracted (once per machine)
    return dataset, report


def subset_dataset(dataset: Mapping[str, np.ndarray], per_split: int, seed: int = 0) -> dict[str, np.ndarray]:
    """At most ``per_split`` images of each split, stratified by class, every present class kept."""
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(dataset["labels"]), bool)
    for split in SPLITS:
        members = np.flatnonzero(dataset["splits"] == split)
        if len(members) <= per_split:
            keep[members] = True
            continue
        labels = dataset["labels"][members]
        for label in np.unique(labels):
            of_class = members[labels == label]
            take = max(1, int(round(per_split * len(of_class) / len(members))))
            keep[rng.permutation(of_class)[:take]] = True
    return {k: (v[keep] if k != "classes" else v) for k, v in dataset.items()}


# ============================================================================================
# Metrics (NumPy only: what core.evaluate.compute_metrics gives, without scikit-learn)
# ============================================================================================

def classification_report(labels: np.ndarray, logits: np.ndarray, classes=CLASSES) -> dict[str, Any]:
    """accuracy, balanced accuracy, macro/weighted F1, top-2, NLL, ECE, per-class precision /
    recall / F1 / support and the confusion matrix (rows = true class), with
    ``core.evaluate.compute_metrics``'s conventions (tests compare the two)."""
    from fer_pipeline.core.evaluate import reliability_bins, softmax
    from fer_pipeline.core.train import classification_metrics

    classes = [str(c) for c in classes]
    k = len(classes)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    logits = np.asarray(logits, dtype=np.float64)
    probs = softmax(logits)
    preds = probs.argmax(axis=1)
    confusion = np.bincount(labels * k + preds, minlength=k * k).reshape(k, k)
    true_pos = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    precision = np.divide(true_pos, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(true_pos, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * true_pos, support + predicted, out=np.zeros(k), where=(support + predicted) > 0)
    top2 = np.argsort(probs, axis=1, kind="mergesort")[:, ::-1][:, :2]  # sklearn's top_k_accuracy_score
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    headline = classification_metrics(labels, preds, k)
    normalized = np.divide(confusion, support[:, None], out=np.zeros((k, k)), where=support[:, None] > 0)
    return {
        "n": int(labels.size),
        "accuracy": headline["accuracy"],
        "balanced_accuracy": headline["balanced_accuracy"],
        "macro_f1": headline["macro_f1"],
        "weighted_f1": float((f1 * support).sum() / max(1, support.sum())),
        "top2_accuracy": float((top2 == labels[:, None]).any(axis=1).mean()) if k > 2 else 1.0,
        "nll": float(-log_probs[np.arange(labels.size), labels].mean()),
        "ece": reliability_bins(probs, labels)["ece"],
        "per_class": [
            {"class": classes[c], "precision": float(precision[c]), "recall": float(recall[c]),
             "f1": float(f1[c]), "support": int(support[c])}
            for c in range(k)
        ],
        "confusion": confusion.astype(int).tolist(),
        "confusion_normalized": normalized.tolist(),
        "classes": classes,
    }


# ============================================================================================
# Stages: fer_pipeline.core.stages (shared with the Kedro nodes), plus the NumPy evaluation
# ============================================================================================

def autoencoder_epoch_logger(params: Mapping[str, Any]):
    """An ``on_epoch`` for ``core.stages.train_autoencoder`` that logs each epoch's loss and rate."""
    epochs = stages.autoencoder_config(params).epochs

    def on_epoch(epoch: int, row: Mapping[str, Any]) -> None:
        log.info("autoencoder epoch %d/%d: loss %.5f (%.0f img/s)", epoch, epochs, row["loss"], row["images_per_s"])

    return on_epoch


def evaluate_split(model, config: Mapping[str, Any], dataset: Mapping[str, np.ndarray], split: str, tta: str,
                   params: Mapping[str, Any], leaked: np.ndarray | None = None,
                   logits_out: dict | None = None) -> dict[str, Any]:
    """``evaluate_model`` node's metrics (NumPy) for one split and TTA mode, timed; with ``leaked``
    (``core.ingestion.leaked_mask`` of the whole dataset) also without the leaked duplicates.
    ``logits_out`` receives the logits under ``(split, tta)`` for later comparisons."""
    from fer_pipeline.core.evaluate import predict_logits, without_leaked

    mask = dataset["splits"] == split
    if not mask.any():
        raise ValueError(f"split {split!r} is empty")
    device = _device(params.get("device", "auto"))
    _sync(device)
    start = time.perf_counter()
    logits = predict_logits(model, dataset["images"][mask], dict(config), tta=tta, batch_size=params["batch_size"],
                            device=device, progress=False)
    seconds = time.perf_counter() - start
    if logits_out is not None:
        logits_out[(split, tta)] = logits
    report = classification_report(dataset["labels"][mask], logits, [str(c) for c in dataset["classes"]])
    report.update(split=split, fer_split=FER_SPLIT_NAMES[split], tta=tta, seconds=seconds,
                  images_per_s=float(mask.sum()) / seconds if seconds > 0 else None)
    if leaked is not None:
        report["without_leaked_duplicates"] = without_leaked(
            dataset["labels"][mask], logits, leaked[mask], [str(c) for c in dataset["classes"]],
            metrics_fn=classification_report)
    return report


RETURNED_MODEL = "resnet34_fp16.pt"


def export_returned_model(model, config: Mapping[str, Any], dataset: Mapping[str, np.ndarray],
                          params: Mapping[str, Any], work: Path, out: Path, max_part_bytes: int,
                          float32_logits: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The model that comes back from the device: float16 weights, cut into parts under the
    per-file limit, and evaluated (val and test, no TTA) beside the float32 model it came from,
    whose logits (``float32_logits[split]``) the evaluation stage already computed."""
    from fer_pipeline.core.evaluate import predict_logits
    from fer_pipeline.core.models import load_model, save_model, split_file

    path = save_model(work / RETURNED_MODEL, model, config, dtype=torch.float16)
    parts = split_file(path, max_part_bytes, out_dir=out)
    half_model, _ = load_model(path)
    device = _device(params.get("device", "auto"))
    comparison: dict[str, Any] = {}
    for split in ("val", "test"):
        mask = dataset["splits"] == split
        labels = dataset["labels"][mask]
        logits = {"float32": float32_logits[split],
                  "float16": predict_logits(half_model, dataset["images"][mask], dict(config), tta="none",
                                            batch_size=params["batch_size"], device=device, progress=False)}
        predictions = {name: value.argmax(1) for name, value in logits.items()}
        comparison[split] = {
            "accuracy_float32": float((predictions["float32"] == labels).mean()),
            "accuracy_float16": float((predictions["float16"] == labels).mean()),
            "predictions_changed": int((predictions["float32"] != predictions["float16"]).sum()),
            "max_abs_logit_difference": float(np.abs(logits["float32"] - logits["float16"]).max()),
            "n": int(mask.sum()),
        }
    log.info("returned model: %s in %d part(s); test predictions changed by float16: %d of %d", path.name,
             len(parts), comparison["test"]["predictions_changed"], comparison["test"]["n"])
    return {"dtype": "float16", "file": _file_info(path), "parts": [p.name for p in parts],
            "part_bytes": [p.stat().st_size for p in parts], "float16_vs_float32": comparison}


def assemble_model(folder: Path, dest: Path) -> Path:
    """Join the returned parts into ``dest`` after checking them against metrics.json's sha256."""
    from fer_pipeline.core.models import join_files, load_model, model_parts

    metrics_path = folder / "metrics.json"
    if not metrics_path.is_file():
        raise SystemExit(f"{metrics_path} not found: give the folder the GPU run's files came back to")
    record = json.loads(metrics_path.read_text(encoding="utf-8")).get("returned_model")
    if not record:
        raise SystemExit(f"{metrics_path} has no returned_model: the run stopped before the model was exported")
    try:
        parts = model_parts(folder / RETURNED_MODEL)
        if [p.name for p in parts] != record["parts"]:
            raise ValueError(f"found parts {[p.name for p in parts]}, metrics.json lists {record['parts']}")
        join_files(parts, dest, sha256=record["file"]["sha256"])
        _, config = load_model(dest)
    except ValueError as exc:
        raise SystemExit(f"cannot assemble the model: {exc}") from None
    print(f"wrote {dest} ({dest.stat().st_size:,} bytes, sha256 checked; {config['arch']}, stem {config['stem']}, "
          f"float16 weights: test accuracy {record['float16_vs_float32']['test']['accuracy_float16']:.4f} "
          f"vs {record['float16_vs_float32']['test']['accuracy_float32']:.4f} in float32)")
    return dest


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def draw_figures(folder: Path, dest: Path) -> list[Path]:
    """Here, from a returned folder: training curves (history.csv) and PrivateTest confusion
    matrices without TTA (metrics.json), drawn by the Kedro nodes' plot functions (matplotlib)."""
    from fer_pipeline.core.evaluate import plot_confusion_matrix
    from fer_pipeline.core.train import plot_training_curves

    metrics_path, history_path = folder / "metrics.json", folder / "history.csv"
    for path in (metrics_path, history_path):
        if not path.is_file():
            raise SystemExit(f"{path} not found: give the folder the GPU run's files came back to")
    with open(history_path, newline="", encoding="utf-8") as handle:
        history = [{k: _number(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]
    report = json.loads(metrics_path.read_text(encoding="utf-8")).get("evaluation", {}).get("test", {}).get("none")
    if not history or not report:
        raise SystemExit(f"{folder}: the run has no training history or no PrivateTest evaluation yet")
    dest.mkdir(parents=True, exist_ok=True)
    figures = {
        "training_curves.png": plot_training_curves(history),
        "confusion_matrix.png": plot_confusion_matrix(report["confusion"], CLASSES, normalized=False),
        "confusion_matrix_normalized.png": plot_confusion_matrix(report["confusion_normalized"], CLASSES,
                                                                 normalized=True),
    }
    written = []
    for name, figure in figures.items():
        figure.savefig(dest / name, dpi=110)
        written.append(dest / name)
        print(f"wrote {dest / name}")
    return written


# ============================================================================================
# Timing, device, files
# ============================================================================================

def _device(name: str | None) -> torch.device:
    from fer_pipeline.core.data import resolve_device

    return resolve_device(name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StageTimer:
    """Wall-clock seconds and peak GPU memory of each stage."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stages: dict[str, dict[str, Any]] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[dict[str, Any]]:
        record: dict[str, Any] = {}
        _sync(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        log.info("---- stage %s", name)
        start = time.perf_counter()
        try:
            yield record
        finally:
            _sync(self.device)
            record["seconds"] = time.perf_counter() - start
            if self.device.type == "cuda":
                record["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
                record["peak_gpu_reserved_mb"] = torch.cuda.max_memory_reserved(self.device) / 2**20
            self.stages[name] = record
            log.info("---- stage %s: %.2f s", name, record["seconds"])


def device_summary(device: torch.device) -> dict[str, Any]:
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


def _clean(value: Any) -> Any:
    """JSON-safe: NumPy scalars/arrays to Python, NaN/inf to None, paths to strings."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        return _clean(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (Path, torch.device, torch.dtype)):
        return str(value)
    return value


def write_json(path: Path, payload: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_clean(payload), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _file_info(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"path": path.as_posix(), "bytes": path.stat().st_size, "sha256": digest}


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(_clean(rows))


def setup_logging(log_file: Path | None, mode: str = "w") -> None:
    """INFO to stdout and ``log_file``; replaces only the handlers an earlier call added."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        if getattr(handler, "_gpu_scripts", False):
            root.removeHandler(handler)
            handler.close()
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file, mode=mode, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler._gpu_scripts = True
        root.addHandler(handler)


# ============================================================================================
# Naive DataLoader baseline vs the fast path (benchmarks/bench_training.py, same process)
# ============================================================================================

def naive_vs_fast(data_root: Path, steps: int, batch_size: int, stem: str, device: torch.device, workers: int,
                  policy: Mapping[str, Any], num_images: int = 8192, seed: int = 0) -> dict[str, Any]:
    """Training images/s of bench_training's fast path and its JPEG DataLoader path, one after
    the other in this process, on the same JPEG files, model, batch size and device."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_training as bench

    files, labels = bench.list_faces(data_root, num_images)
    batch_size = min(batch_size, len(files))
    decode_start = time.perf_counter()
    images = np.stack([bench.read_grey(f) for f in files])
    decode_seconds = time.perf_counter() - decode_start
    args = types.SimpleNamespace(stem=stem, channels_last=device.type == "cuda", compile=False, seed=seed,
                                 warmup=min(10, steps), steps=steps, batch_size=batch_size, workers=workers)
    fast = bench.bench_fast(images, labels, args, device, dict(policy))
    naive = bench.bench_naive(files, labels, args, device, dict(policy))
    return {"fast_images_per_s": fast, "naive_images_per_s": naive, "speedup": fast / naive,
            "steps": steps, "warmup_steps": args.warmup, "batch_size": batch_size, "images": len(files),
            "naive_workers": workers, "stem": stem, "channels_last": args.channels_last,
            "fast_path_one_time_decode_s": decode_seconds,
            "note": "model step only (forward, backward, SGD); bench_training.bench_fast vs bench_naive"}


# ============================================================================================
# Main
# ============================================================================================

def effective_parameters(args: argparse.Namespace) -> dict[str, Any]:
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
    parser = argparse.ArgumentParser(
        description="The default FER pipeline without Kedro/MLflow (GPU machine).",
        epilog="GPU: PYTHONUNBUFFERED=1 python3 scripts/gpu_pipeline.py --data .gpu_data/fer2013.tar.gz --out $OUT "
               "--naive-baseline-steps 200",
    )
    parser.add_argument("--data", help="FER2013 folder / fer2013.csv / archive of one (.tar.gz, .zip) / "
                                       "fer_dataset.npz (default: ingestion.source_path)")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(DEFAULT_OUT),
                        help="output folder (default $OUT, else build/gpu_out: git-ignored, so an 85 MB model "
                             "never travels to the device with the working tree)")
    parser.add_argument("--work", default=str(DEFAULT_WORK),
                        help="scratch folder: extracted archives, training checkpoints (default build/gpu_work)")
    parser.add_argument("--conf", default=str(CONF_DIR), help="folder of parameters*.yml (default conf/base)")
    parser.add_argument("--params-json", help="read the parameters from this JSON (see --dump-params) instead")
    parser.add_argument("--dump-params", metavar="FILE", help="write the effective parameters as JSON and exit")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a parameter, e.g. "
                        "training.config.lr=0.05 (repeatable; VALUE in YAML flow syntax)")
    parser.add_argument("--epochs", type=int, help="training.config.epochs")
    parser.add_argument("--ae-epochs", type=int, help="autoencoder.epochs")
    parser.add_argument("--subset", type=int, help="keep at most N images per split (stratified): smoke runs")
    parser.add_argument("--duplicates", choices=("keep", "drop_leaked"), help="ingestion.duplicates")
    parser.add_argument("--device", help="device of every stage (default: the parameters' 'auto')")
    parser.add_argument("--fresh", action="store_true", help="ignore (delete) training checkpoints in --work")
    parser.add_argument("--naive-baseline-steps", type=int, default=0,
                        help="also time bench_training's naive DataLoader path vs the fast path, N steps each")
    parser.add_argument("--naive-workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="DataLoader workers of the naive path (default min(8, cores))")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--part-mib", type=float, default=15.0,
                        help="largest part of the returned float16 model, MiB (the device returns files up to 16)")
    parser.add_argument("--assemble-model", nargs=2, metavar=("FOLDER", "DEST"),
                        help="join the returned model parts in FOLDER into DEST (sha256 checked) and exit")
    parser.add_argument("--figures", nargs=2, metavar=("FOLDER", "DEST_DIR"),
                        help="draw the training curves and PrivateTest confusion matrices of a returned FOLDER "
                             "into DEST_DIR (needs matplotlib) and exit")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.assemble_model or args.figures:
        if args.assemble_model:
            assemble_model(Path(args.assemble_model[0]), Path(args.assemble_model[1]))
        if args.figures:
            draw_figures(Path(args.figures[0]), Path(args.figures[1]))
        return {}
    params = effective_parameters(args)
    if args.dump_params:
        Path(args.dump_params).write_text(json.dumps(params, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.dump_params}")
        return params
    if args.threads:
        torch.set_num_threads(args.threads)

    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    setup_logging(out / "pipeline.log")
    checkpoint_dir = work / "checkpoints" / "pipeline"
    if args.fresh:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    params["training"]["config"]["checkpoint_dir"] = checkpoint_dir.as_posix()

    device = _device(params["training"]["config"]["device"])
    timer = StageTimer(device)
    data = Path(args.data) if args.data else ROOT / params["ingestion"]["source_path"]
    metrics: dict[str, Any] = {
        "script": "scripts/gpu_pipeline.py", "argv": sys.argv[1:] if argv is None else list(argv),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "status": "running",
        "device": device_summary(device), "parameters": params, "subset_per_split": args.subset,
        "stages": timer.stages,
    }
    metrics_path = out / "metrics.json"

    def save(status: str | None = None) -> None:
        if status:
            metrics["status"] = status
        write_json(metrics_path, metrics)

    log.info("device: %s", metrics["device"])
    # A command stopped at its time limit gets SIGTERM: leave a metrics.json that says where.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        _run(args, params, data, out, work, device, timer, metrics, save)
    except BaseException as exc:
        save(f"failed in stage {list(timer.stages)[-1] if timer.stages else 'setup'}: {type(exc).__name__}: {exc}")
        raise
    metrics["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    save("complete")
    print_results(metrics)
    return metrics


def _run(args, params, data, out, work, device, timer, metrics, save) -> None:
    from fer_pipeline.core.autoencoder import save_autoencoder
    from fer_pipeline.core.ingestion import leaked_mask
    from fer_pipeline.core.models import save_model

    with timer("ingestion") as stage:
        dataset, report = load_dataset(data, params["ingestion"], work)
        if args.subset:
            dataset = subset_dataset(dataset, args.subset, params["ingestion"]["seed"])
        stage["images_read"] = int(report.get("read", len(dataset["labels"])))
        stage["images_kept"] = int(len(dataset["labels"]))
    decode_seconds = stage["seconds"] - report.get("extract_seconds", 0.0)
    stage["images_per_s"] = stage["images_read"] / decode_seconds if decode_seconds > 0 else None
    report["split_sizes"] = {s: int((dataset["splits"] == s).sum()) for s in SPLITS}
    metrics["ingestion"] = report
    log.info("dataset: %s (decoder: %s)", report["split_sizes"], report.get("decoder"))
    save()

    with timer("class_balance"):
        summary, table = stages.class_balance_summary(dataset, params["class_balance"])
        metrics["class_balance"] = {**summary, "table": table}
    save()

    ae_params = params["autoencoder"]
    with timer("autoencoder") as stage:
        run = stages.train_autoencoder(dataset, ae_params, on_epoch=autoencoder_epoch_logger(ae_params))
        stage["images_per_s"] = statistics.median(h["images_per_s"] for h in run.history)
        stage["epochs"] = ae_params["epochs"] * (2 if run.twin_history is not None else 1)
    save_autoencoder(work / "autoencoder.pt", run.model)
    metrics["autoencoder"] = {"config": run.config.to_dict(), "history": run.history,
                              "reconstruction_error": run.errors}
    if run.twin_history is not None:
        metrics["autoencoder"]["twin_history"] = run.twin_history
    save()

    with timer("oversampling") as stage:
        synthetic, info = stages.oversample(dataset, run.model, ae_params)
        stage["synthetic_images"] = int(len(synthetic["labels"]))
    metrics["oversampling"] = info
    del run
    save()

    with timer("augmentation"):
        training_set, info = stages.assemble_training_set(dataset, synthetic, params["augmentation"])
    metrics["augmentation"] = info
    save()

    history: list[dict[str, Any]] = []

    def on_epoch(epoch: int, row: dict[str, Any]) -> None:
        history.append(row)
        metrics["training"] = {"epochs_done": len(history), "last_epoch": row}
        save()

    with timer("training") as stage:
        result, model_config, train_cfg = stages.train_resnet(training_set, dataset, params["training"],
                                                              params["augmentation"], on_epoch)
    rates = [row["images_per_s"] for row in result.history]
    steady = rates[1:] or rates
    stage["images_per_s_median"] = statistics.median(steady) if steady else None
    stage["epochs_run_here"] = len(result.history) - (result.resumed_from_epoch or 0)
    model_path = save_model(work / "resnet34.pt", result.model, model_config)
    metrics["training"] = {
        "best_epoch": result.best_epoch, "best_val_metrics": result.best_metrics,
        "select_metric": train_cfg.select_metric, "epochs_run": len(result.history),
        "resumed_from_epoch": result.resumed_from_epoch, "stopped_early": result.stopped_early,
        "train_images": int(len(training_set["labels"])), "synthetic_images": int(training_set["synthetic"].sum()),
        "device_info": result.device_info, "train_config": result.train_config, "model_config": model_config,
        "epoch_seconds_total": float(sum(row["epoch_seconds"] for row in result.history)),
        "images_per_s_median": stage["images_per_s_median"],
    }
    write_csv(out / "history.csv", result.history)
    save()

    # without and with ten-crop TTA, and the parameters' mode if it is another (flip)
    modes = list(dict.fromkeys(("none", "ten_crop", params["evaluate"]["tta"])))
    evaluation: dict[str, dict[str, Any]] = {"val": {}, "test": {}}
    logits: dict[tuple[str, str], np.ndarray] = {}
    with timer("evaluation") as stage:
        leaked = leaked_mask(dataset["images"], dataset["labels"], dataset["splits"])
        for split in ("val", "test"):
            for tta in modes:
                evaluation[split][tta] = evaluate_split(result.model, model_config, dataset, split, tta,
                                                        params["evaluate"], leaked, logits)
        stage["images_per_s"] = {tta: evaluation["test"][tta]["images_per_s"] for tta in modes}
    # The TTA mode is chosen on val too; test numbers of every mode are reported, never chosen from.
    tta_on_val = max(modes, key=lambda t: evaluation["val"][t][train_cfg.select_metric])
    metrics["evaluation"] = evaluation
    metrics["selection"] = {
        "split": "val", "fer_split": FER_SPLIT_NAMES["val"], "metric": train_cfg.select_metric,
        "best_epoch": result.best_epoch, "tta_selected_on_val": tta_on_val,
        "test_used_for": "reporting only (evaluated after the model and the TTA mode were chosen)",
    }
    metrics["headline"] = {
        f"{split}_{tta}_{key}": evaluation[split][tta][key]
        for split in ("val", "test") for tta in modes for key in ("accuracy", "macro_f1", "balanced_accuracy")
    }
    for tta in modes:  # the canonical PrivateTest without copies of training images (None: none there)
        clean = evaluation["test"][tta]["without_leaked_duplicates"]
        for key in ("accuracy", "macro_f1", "balanced_accuracy"):
            metrics["headline"][f"test_{tta}_without_leaked_{key}"] = clean[key] if clean else None
    metrics["headline"]["parameters_tta"] = params["evaluate"]["tta"]
    metrics["headline"]["tta_selected_on_val"] = tta_on_val
    metrics["throughput"] = {
        "train_images_per_s_median": stage_value(timer, "training", "images_per_s_median"),
        "autoencoder_images_per_s_median": stage_value(timer, "autoencoder", "images_per_s"),
        "inference_images_per_s": stage_value(timer, "evaluation", "images_per_s"),
        "ingestion_images_per_s": stage_value(timer, "ingestion", "images_per_s"),
    }
    write_csv(out / "per_class.csv", [
        {"split": split, "fer_split": FER_SPLIT_NAMES[split], "tta": tta, **row}
        for split in ("val", "test") for tta in modes for row in evaluation[split][tta]["per_class"]
    ])
    write_csv(out / "confusion.csv", [
        {"split": split, "fer_split": FER_SPLIT_NAMES[split], "tta": tta, "true_class": CLASSES[i],
         **{f"pred_{name}": count for name, count in zip(CLASSES, row)}}
        for split in ("val", "test") for tta in modes for i, row in enumerate(evaluation[split][tta]["confusion"])
    ])
    metrics["files"] = {"model": _file_info(model_path), "autoencoder": _file_info(work / "autoencoder.pt")}
    save()

    with timer("model_export"):
        metrics["returned_model"] = export_returned_model(
            result.model, model_config, dataset, params["evaluate"], work, out, int(args.part_mib * 2**20),
            {split: logits[(split, "none")] for split in ("val", "test")})
    metrics["files"]["returned_model"] = metrics["returned_model"]["file"]
    save()

    if args.naive_baseline_steps > 0:
        root = resolve_data(data, work) if data.is_file() else data
        if not any((root / "train").glob("*/*.jpg")):
            metrics["naive_baseline"] = {"skipped": f"{root} has no train/<class>/*.jpg files"}
        else:
            with timer("naive_baseline"):
                metrics["naive_baseline"] = naive_vs_fast(
                    root, args.naive_baseline_steps, params["training"]["config"]["batch_size"],
                    params["training"]["model"]["stem"], device, args.naive_workers, params["augmentation"]["policy"],
                    seed=params["training"]["config"]["seed"])
        save()


def stage_value(timer: StageTimer, stage: str, key: str) -> Any:
    return timer.stages.get(stage, {}).get(key)


def print_results(metrics: Mapping[str, Any]) -> None:
    """The closing tables: stages, then metrics per split / TTA, then test recall per class."""
    lines = ["", f"device: {metrics['device'].get('name')} ({metrics['device']['device']}), "
                 f"torch {metrics['device']['torch']}", "",
             f"{'stage':<16}{'seconds':>10}{'peak GPU MiB':>14}  throughput"]
    for name, record in metrics["stages"].items():
        rate = record.get("images_per_s_median", record.get("images_per_s"))
        if isinstance(rate, dict):
            rate = ", ".join(f"{k} {v:,.0f} img/s" for k, v in rate.items() if v)
        elif isinstance(rate, (int, float)):
            rate = f"{rate:,.0f} img/s"
        peak = record.get("peak_gpu_memory_mb")
        lines.append(f"{name:<16}{record['seconds']:>10.1f}{(f'{peak:,.0f}' if peak else '-'):>14}  {rate or ''}")
    total = sum(r["seconds"] for r in metrics["stages"].values())
    lines.append(f"{'total':<16}{total:>10.1f}")
    selection = metrics["selection"]
    lines += ["", f"model selected on {selection['fer_split']} ({selection['split']}) {selection['metric']}: "
                  f"best epoch {selection['best_epoch']}; TTA chosen on val: {selection['tta_selected_on_val']}", "",
              f"{'split':<22}{'tta':<10}{'accuracy':>10}{'macro-F1':>10}{'bal. acc':>10}"]
    for split in ("val", "test"):
        for tta in metrics["evaluation"][split]:
            r = metrics["evaluation"][split][tta]
            label = f"{FER_SPLIT_NAMES[split]} ({split})"
            lines.append(f"{label:<22}{tta:<10}{r['accuracy']:>10.4f}{r['macro_f1']:>10.4f}"
                         f"{r['balanced_accuracy']:>10.4f}")
    for tta, r in metrics["evaluation"]["test"].items():
        clean = r.get("without_leaked_duplicates")
        if clean:
            label = f"PrivateTest -{clean['excluded']} leaked"
            lines.append(f"{label:<22}{tta:<10}{clean['accuracy']:>10.4f}{clean['macro_f1']:>10.4f}"
                         f"{clean['balanced_accuracy']:>10.4f}")
    lines += ["", "PrivateTest recall per class: " + ", ".join(
        f"{row['class']} {row['recall']:.3f}/{ten['recall']:.3f}"
        for row, ten in zip(metrics["evaluation"]["test"]["none"]["per_class"],
                            metrics["evaluation"]["test"]["ten_crop"]["per_class"])) + "  (none/ten_crop)"]
    naive = metrics.get("naive_baseline")
    if naive and "speedup" in naive:
        lines += ["", f"training step throughput, same process: fast {naive['fast_images_per_s']:,.0f} img/s, "
                      f"naive DataLoader ({naive['naive_workers']} workers) {naive['naive_images_per_s']:,.0f} img/s: "
                      f"{naive['speedup']:.2f}x"]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
