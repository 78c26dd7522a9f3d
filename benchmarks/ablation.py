"""Class-imbalance ablation (issue 6): every strategy of conf/ablation.yml x every seed.

One runner, one config. A strategy is a set of parameter overrides on the default parameters
(conf/base/parameters_*.yml), after a shortened schedule common to all (``common`` in the YAML);
see conf/ablation.yml. Each run trains the ResNet-34 with ``core.train.train_classifier`` (best
epoch by PublicTest = val macro-F1), then evaluates PublicTest and PrivateTest (= test) with
``core.evaluate.predict_logits`` and NumPy metrics (``fer_pipeline.core.stages``, as the Kedro
nodes, and scripts/gpu_pipeline.py supply the stages, so this needs only torch, torchvision,
numpy and pillow).

* The oversampling autoencoder is trained once per seed, only when a strategy needs it
  (``augmentation.use_synthetic``); its synthetic faces are kept in memory and in
  ``--work/ablation/`` and reused by every strategy and later commands on the same machine.
* Every finished run is appended at once as one JSON line to ``--out/ablation_runs.jsonl`` (a
  killed command loses only the run in progress). Runs already in that file, or in a ``--done``
  file, with the same parameters (fingerprint), are skipped: run the same command again to resume.
  ``--done`` lines are copied into ``--out``'s file first, so that file is always the whole record.
* ``--only STRATEGY[,..]`` and ``--seeds 0,1`` split the work across 10-minute commands.

GPU machine, from the repository root (``.gpu_data/`` carried; after each command copy the
returned ablation_runs.jsonl to .gpu_data/ablation_runs.jsonl so the next command, even on a
fresh machine, continues from it)::

    PYTHONUNBUFFERED=1 python3 benchmarks/ablation.py run --data .gpu_data/fer2013.tar.gz --out $OUT \\
        --done .gpu_data/ablation_runs.jsonl --only ce,weighted_ce,cb_focal

(then ``ldam_drw,logit_adjusted,aux_reconstruction`` and ``ae_oversample_ce,
ae_oversample_logit_adjusted,class_balanced_sampler``: six runs per command). Here (the table
needs nothing beyond the standard library; --chart needs matplotlib, --mlflow needs mlflow)::

    python benchmarks/ablation.py report --runs .gpu_data/ablation_runs.jsonl \\
        --chart docs/ablation.png --markdown docs/ablation.md --mlflow

The report marks the best strategy by mean PublicTest (val) macro-F1 over seeds; PrivateTest
columns are reported, never used to choose. ``--mlflow`` logs one MLflow run per (strategy, seed)
into the experiment ``fer_ablation`` of the project's store (sqlite:///mlflow.db at the root);
runs already logged there (same strategy, seed and fingerprint) are not logged twice.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_pipeline as gp  # noqa: E402  (also puts src/ on the path in a bare checkout)
from fer_pipeline.core import stages  # noqa: E402

log = logging.getLogger("ablation")

DEFAULT_CONFIG = ROOT / "conf" / "ablation.yml"
RUNS_FILE = "ablation_runs.jsonl"
DEFAULT_OUT = ROOT / "build" / "ablation_out"
MLFLOW_EXPERIMENT = "fer_ablation"
#: Classes whose recall the table shows (the two rarest-and-hardest of FER2013).
FOCUS_CLASSES = ("disgust", "fear")
#: Parameters that do not change a run's result (left out of its fingerprint).
_NEUTRAL = {
    "ingestion": ("source_path", "workers", "demo"),
    "autoencoder": ("device",),
    "training.config": ("device", "checkpoint_dir", "resume", "eval_batch_size", "compile"),
    "evaluate": ("device", "batch_size", "model_run_id", "split"),
}


# ============================================================================================
# Configuration
# ============================================================================================

def load_ablation(path: str | os.PathLike = DEFAULT_CONFIG) -> dict[str, Any]:
    """conf/ablation.yml, checked: ``seeds`` (>= 1 ints), ``common`` and ``strategies`` (dicts)."""
    config = gp.read_yaml_file(path) or {}
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
    return {"training": {"config": {"seed": seed}}, "augmentation": {"seed": seed},
            "autoencoder": {"seed": seed, "oversampling": {"seed": seed}}}


def run_parameters(defaults: Mapping[str, Any], ablation: Mapping[str, Any], strategy: str, seed: int,
                   sets: Sequence[str] | None = None) -> dict[str, Any]:
    """defaults <- common <- strategy <- command-line sets <- seed."""
    params = gp.deep_merge(defaults, ablation["common"])
    params = gp.deep_merge(params, ablation["strategies"][strategy])
    params = gp.apply_sets(params, list(sets or []))
    return gp.deep_merge(params, seed_overrides(seed))


def _without_neutral(params: Mapping[str, Any]) -> dict[str, Any]:
    params = gp.deep_merge(params, {})
    for section, keys in _NEUTRAL.items():
        node = params
        for part in section.split("."):
            node = node.get(part, {})
        for key in keys:
            node.pop(key, None)
    return params


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_fingerprint(params: Mapping[str, Any], subset: int | None) -> str:
    """What decides a run's result: the stages' parameters (less device / file settings) + subset."""
    relevant = _without_neutral(params)
    sections = {key: relevant[key] for key in ("ingestion", "augmentation", "training")}
    sections["evaluate_tta"] = relevant["evaluate"]["tta"]
    if relevant["augmentation"]["use_synthetic"]:
        sections["autoencoder"] = relevant["autoencoder"]
    return _digest({"params": sections, "subset": subset})


# ============================================================================================
# Run records (JSON lines)
# ============================================================================================

def read_runs(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Records of every existing file, in order; unreadable lines (a killed write) are skipped."""
    records = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d: not a complete JSON line (a killed write?): skipped", path, number)
                continue
            if isinstance(record, dict) and {"strategy", "seed"} <= set(record):
                records.append(record)
    return records


def run_key(record: Mapping[str, Any]) -> tuple[str, int, str]:
    return (str(record["strategy"]), int(record["seed"]), str(record.get("fingerprint", "")))


def append_run(path: Path, record: Mapping[str, Any]) -> None:
    """One line, flushed and synced at once (after a newline if a killed write left a partial line)."""
    line = json.dumps(gp._clean(record), sort_keys=False) + "\n"
    if path.is_file() and path.stat().st_size:
        with open(path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                line = "\n" + line
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


# ============================================================================================
# Running
# ============================================================================================

class SyntheticCache:
    """The autoencoder's synthetic faces per (autoencoder parameters, seed, train data)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.memory: dict[str, dict[str, Any]] = {}

    def get(self, dataset: Mapping[str, Any], ae_params: Mapping[str, Any]) -> tuple[dict, float, str]:
        """(synthetic set, seconds spent now, "trained" | "memory" | "disk")."""
        import numpy as np

        train = dataset["splits"] == "train"
        data_id = hashlib.sha256(np.ascontiguousarray(dataset["images"][train]).data)
        data_id.update(np.ascontiguousarray(dataset["labels"][train]).data)
        key = _digest({"autoencoder": {k: v for k, v in ae_params.items() if k != "device"},
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
            run = stages.train_autoencoder(dataset, ae_params, twin=False,
                                           on_epoch=gp.autoencoder_epoch_logger(ae_params))
            synthetic, _ = stages.oversample(dataset, run.model, ae_params)
            del run
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.stem + ".tmp.npz")
            np.savez(tmp, **synthetic)
            os.replace(tmp, path)
            source = "trained"
        self.memory[key] = synthetic
        return synthetic, time.perf_counter() - start, source


def run_one(dataset: Mapping[str, Any], params: Mapping[str, Any], strategy: str, seed: int,
            cache: SyntheticCache) -> dict[str, Any]:
    """Train and evaluate one (strategy, seed); returns its record (without the bookkeeping keys)."""
    import torch

    synthetic, ae_seconds, ae_source = None, 0.0, None
    if params["augmentation"]["use_synthetic"]:
        synthetic, ae_seconds, ae_source = cache.get(dataset, params["autoencoder"])
    training_set, aug_info = stages.assemble_training_set(dataset, synthetic, params["augmentation"])
    device = gp._device(params["training"]["config"]["device"])
    gp._sync(device)
    start = time.perf_counter()
    result, model_config, train_cfg = stages.train_resnet(training_set, dataset, params["training"],
                                                          params["augmentation"])
    gp._sync(device)
    train_seconds = time.perf_counter() - start
    tta = params["evaluate"]["tta"]
    val = gp.evaluate_split(result.model, model_config, dataset, "val", tta, params["evaluate"])
    test = gp.evaluate_split(result.model, model_config, dataset, "test", tta, params["evaluate"])
    rates = [row["images_per_s"] for row in result.history]
    record = {
        "strategy": strategy, "seed": seed,
        "loss": train_cfg.loss, "sampler": train_cfg.sampler,
        "use_synthetic": bool(params["augmentation"]["use_synthetic"]),
        "aux_weight": train_cfg.aux_weight, "classifier": model_config.get("classifier"), "epochs": train_cfg.epochs,
        "select_metric": train_cfg.select_metric, "select_split": "val", "tta": tta,
        "best_epoch": result.best_epoch,
        **{f"val_{k}": val[k] for k in ("accuracy", "macro_f1", "balanced_accuracy")},
        **{f"test_{k}": test[k] for k in ("accuracy", "macro_f1", "balanced_accuracy")},
        "val_recall": {row["class"]: row["recall"] for row in val["per_class"]},
        "test_recall": {row["class"]: row["recall"] for row in test["per_class"]},
        "test_f1": {row["class"]: row["f1"] for row in test["per_class"]},
        "train_seconds": train_seconds,
        "images_per_s_median": statistics.median(rates[1:] or rates) if rates else None,
        "train_images": aug_info["training_set_size"], "synthetic_images": aug_info["synthetic_faces"],
        "autoencoder_seconds": ae_seconds, "autoencoder_source": ae_source,
        "peak_gpu_memory_mb": result.device_info.get("peak_memory_mb"),
        "device": result.device_info.get("name"),
    }
    del result
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return record


def _parse_list(text: str | None, cast=str) -> list | None:
    return None if text is None else [cast(v.strip()) for v in text.split(",") if v.strip()]


def cmd_run(args: argparse.Namespace) -> int:
    import torch

    ablation = load_ablation(args.config)
    strategies = _parse_list(args.only) or list(ablation["strategies"])
    unknown = [s for s in strategies if s not in ablation["strategies"]]
    if unknown:
        raise SystemExit(f"unknown strategies {unknown}; conf has: {', '.join(ablation['strategies'])}")
    seeds = _parse_list(args.seeds, int) or ablation["seeds"]
    sets = list(args.set or [])
    if args.epochs is not None:
        sets.append(f"training.config.epochs={args.epochs}")
    if args.ae_epochs is not None:
        sets.append(f"autoencoder.epochs={args.ae_epochs}")
    # the device is no part of a run's identity (not in its fingerprint nor in the schedule digest)
    device_sets = [] if args.device is None else [
        f"{section}.device={args.device}" for section in ("training.config", "autoencoder", "evaluate")]
    defaults = gp.load_parameters(args.conf)

    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    runs_path = out / RUNS_FILE
    if args.dry_run:
        gp.setup_logging(None)
    else:
        gp.setup_logging(out / "ablation.log", mode="a")
    if args.threads:
        torch.set_num_threads(args.threads)

    # Earlier results: ours, then --done files (copied into ours, so ours stays the whole record).
    existing = read_runs([runs_path])
    done = {run_key(r) for r in existing}
    for record in read_runs(args.done or []):
        if run_key(record) not in done:
            if not args.dry_run:
                append_run(runs_path, record)
            done.add(run_key(record))

    plan = []
    for seed in seeds:  # seed-major: a killed command leaves whole seeds behind it
        for strategy in strategies:
            params = run_parameters(defaults, ablation, strategy, seed, sets + device_sets)
            key = (strategy, seed, run_fingerprint(params, args.subset))
            plan.append((strategy, seed, params, key, key in done))
    todo = [p for p in plan if not p[4]]
    log.info("ablation: %d runs planned, %d already done, %d to run", len(plan), len(plan) - len(todo), len(todo))
    for strategy, seed, _, key, finished in plan:
        log.info("  %-30s seed %d  %s", strategy, seed, "done" if finished else "to run")
    if args.dry_run or not todo:
        print(markdown_report(read_runs([runs_path] + list(args.done or [])), list(ablation["strategies"])))
        return 0

    data = Path(args.data) if args.data else ROOT / defaults["ingestion"]["source_path"]
    ingestion_params = gp.deep_merge(defaults, ablation["common"])
    ingestion_params = gp.apply_sets(ingestion_params, sets + device_sets)["ingestion"]
    start = time.perf_counter()
    dataset, report = gp.load_dataset(data, ingestion_params, work)
    if args.subset:
        dataset = gp.subset_dataset(dataset, args.subset, ingestion_params["seed"])
    log.info("dataset %s in %.1f s (decoder: %s)",
             {s: int((dataset["splits"] == s).sum()) for s in gp.SPLITS}, time.perf_counter() - start,
             report.get("decoder"))
    cache = SyntheticCache(work / "ablation")
    for index, (strategy, seed, params, key, _) in enumerate(todo, 1):
        if params["ingestion"] != ingestion_params:
            raise SystemExit(f"strategy {strategy} changes the ingestion parameters: not supported "
                             "(one dataset per command)")
        log.info("run %d/%d: %s seed %d", index, len(todo), strategy, seed)
        record = run_one(dataset, params, strategy, seed, cache)
        record.update(fingerprint=key[2], schedule=_digest({"common": ablation["common"], "sets": sets,
                                                             "subset": args.subset}),
                      overrides=ablation["strategies"][strategy], sets=sets, subset=args.subset,
                      duplicates=ingestion_params["duplicates"],
                      finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        append_run(runs_path, record)
        log.info("  %s seed %d: val macro-F1 %.4f, test acc %.4f, test macro-F1 %.4f (%.0f s)", strategy, seed,
                 record["val_macro_f1"], record["test_accuracy"], record["test_macro_f1"], record["train_seconds"])
    print(markdown_report(read_runs([runs_path]), list(ablation["strategies"])))
    return 0


# ============================================================================================
# Report
# ============================================================================================

#: (record key or (dict key, class), column title, scale, decimals)
COLUMNS: tuple[tuple[Any, str, float, int], ...] = (
    ("val_macro_f1", "val macro-F1", 100, 1),
    ("val_accuracy", "val acc", 100, 1),
    ("test_accuracy", "test acc", 100, 1),
    ("test_macro_f1", "test macro-F1", 100, 1),
    ("test_balanced_accuracy", "test bal. acc", 100, 1),
    *((("test_recall", name), f"test recall {name}", 100, 1) for name in FOCUS_CLASSES),
    ("train_seconds", "train s", 1, 0),
)


def _value(record: Mapping[str, Any], key: Any) -> float | None:
    value = record.get(key[0], {}).get(key[1]) if isinstance(key, tuple) else record.get(key)
    return float(value) if isinstance(value, (int, float)) else None


def latest_runs(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The last record of each (strategy, seed)."""
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for record in records:
        latest[(str(record["strategy"]), int(record["seed"]))] = dict(record)
    return list(latest.values())


def summarize(records: Iterable[Mapping[str, Any]], order: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One row per strategy: seeds, and (mean, std) of every column (std over seeds, ddof 1)."""
    by_strategy: dict[str, list[dict[str, Any]]] = {}
    for record in latest_runs(records):
        by_strategy.setdefault(record["strategy"], []).append(record)
    names = [s for s in (order or []) if s in by_strategy] + sorted(s for s in by_strategy if s not in (order or []))
    rows = []
    for name in names:
        runs = sorted(by_strategy[name], key=lambda r: r["seed"])
        row: dict[str, Any] = {"strategy": name, "seeds": [r["seed"] for r in runs], "n": len(runs)}
        for key, *_ in COLUMNS:
            values = [v for v in (_value(r, key) for r in runs) if v is not None]
            mean = statistics.fmean(values) if values else math.nan
            std = statistics.stdev(values) if len(values) > 1 else math.nan
            row[key if isinstance(key, str) else f"{key[0]}_{key[1]}"] = (mean, std)
        rows.append(row)
    return rows


def best_strategy(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """Highest mean PublicTest (val) macro-F1. Test figures play no part."""
    scored = [r for r in rows if not math.isnan(r["val_macro_f1"][0])]
    return max(scored, key=lambda r: r["val_macro_f1"][0])["strategy"] if scored else None


def _cell(mean: float, std: float, scale: float, decimals: int) -> str:
    if math.isnan(mean):
        return "–"
    text = f"{mean * scale:.{decimals}f}"
    return text if math.isnan(std) else f"{text} ± {std * scale:.{decimals}f}"


def markdown_report(records: Sequence[Mapping[str, Any]], order: Sequence[str] | None = None) -> str:
    rows = summarize(records, order)
    if not rows:
        return "(no ablation runs yet)"
    best = best_strategy(rows)
    header = ["strategy", "seeds", *(title for _, title, *_ in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        name = f"**{row['strategy']}** (best)" if row["strategy"] == best else row["strategy"]
        cells = [name, ",".join(str(s) for s in row["seeds"])]
        for key, _, scale, decimals in COLUMNS:
            cells.append(_cell(*row[key if isinstance(key, str) else f"{key[0]}_{key[1]}"], scale, decimals))
        lines.append("| " + " | ".join(cells) + " |")
    schedules = sorted({str(r.get("schedule")) for r in latest_runs(records)})
    epochs = sorted({r.get("epochs") for r in latest_runs(records)}, key=str)
    notes = [
        "",
        f"Mean ± std over seeds (sample std); percentages except train s. Epochs per run: "
        f"{', '.join(map(str, epochs))}. val = FER2013 PublicTest, test = PrivateTest.",
        f"Best strategy by mean PublicTest (val) macro-F1: **{best}**. Each run's epoch was also chosen on "
        "val macro-F1; PrivateTest columns are reported only, never used to choose.",
    ]
    if len(schedules) > 1:
        notes.append(f"WARNING: runs of {len(schedules)} different schedules/overrides are mixed in these files.")
    return "\n".join(lines + notes)


def write_chart(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, best: str | None) -> Path:
    """Bars of val (PublicTest) and test (PrivateTest) macro-F1 per strategy, std as error bars."""
    import numpy as np
    from matplotlib.figure import Figure

    names = [r["strategy"] for r in rows]
    x = np.arange(len(rows))
    figure = Figure(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.2), layout="constrained")
    ax = figure.subplots()
    for offset, key, label in ((-0.2, "val_macro_f1", "val (PublicTest) macro-F1"),
                               (0.2, "test_macro_f1", "test (PrivateTest) macro-F1")):
        means = np.array([r[key][0] for r in rows]) * 100
        stds = np.nan_to_num(np.array([r[key][1] for r in rows]) * 100)
        ax.bar(x + offset, means, 0.4, yerr=stds, capsize=3, label=label)
    ax.set_xticks(x, [f"{n} (best)" if n == best else n for n in names], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("macro-F1 (%)")
    finite = [r[k][0] * 100 for r in rows for k in ("val_macro_f1", "test_macro_f1") if not math.isnan(r[k][0])]
    if finite:
        ax.set_ylim(max(0.0, min(finite) - 10), min(100.0, max(finite) + 5))
    ax.set_title("Class-imbalance ablation (mean ± std over seeds)")
    ax.legend(fontsize=8, loc="lower right")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def default_mlflow_uri() -> str:
    return f"sqlite:///{(ROOT / 'mlflow.db').as_posix()}"


def log_to_mlflow(records: Sequence[Mapping[str, Any]], uri: str, experiment: str = MLFLOW_EXPERIMENT) -> dict:
    """One MLflow run per (strategy, seed) record, params + tags + metrics; skips ones already there."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        artifact_location = None
        if uri.startswith("sqlite:///"):  # beside the database, as kedro-mlflow's mlruns/
            artifact_location = (Path(uri[len("sqlite:///"):]).parent / "mlruns").resolve().as_uri()
        experiment_id = client.create_experiment(experiment, artifact_location=artifact_location)
    else:
        experiment_id = found.experiment_id
    logged = skipped = 0
    for record in latest_runs(records):
        key = "/".join(map(str, run_key(record)))
        if client.search_runs([experiment_id], filter_string=f"tags.ablation_key = '{key}'", max_results=1):
            skipped += 1
            continue
        params = {"strategy": record["strategy"], "seed": record["seed"],
                  **{k: record.get(k) for k in ("loss", "sampler", "use_synthetic", "aux_weight", "classifier",
                                                "epochs", "tta", "select_metric", "select_split", "subset",
                                                "duplicates", "fingerprint")},
                  "overrides": json.dumps(record.get("overrides", {}), sort_keys=True)}
        metrics = {k: float(v) for k, v in record.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("seed", "epochs", "subset")
                   and math.isfinite(float(v))}
        for group in ("val_recall", "test_recall", "test_f1"):
            for name, value in (record.get(group) or {}).items():
                metrics[f"{group}.{name}"] = float(value)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"{record['strategy']}-seed{record['seed']}"):
            mlflow.log_params({k: str(v) for k, v in params.items()})
            mlflow.log_metrics(metrics)
            mlflow.set_tags({"strategy": record["strategy"], "seed": str(record["seed"]), "ablation_key": key,
                             "device": str(record.get("device")), "source": "benchmarks/ablation.py"})
        logged += 1
    return {"experiment": experiment, "experiment_id": experiment_id, "logged": logged, "skipped": skipped}


def cmd_report(args: argparse.Namespace) -> int:
    records = read_runs(args.runs)
    if not records:
        raise SystemExit(f"no ablation runs in {', '.join(map(str, args.runs))}")
    order = list(load_ablation(args.config)["strategies"]) if Path(args.config).is_file() else None
    text = markdown_report(records, order)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n", encoding="utf-8")
    if args.chart:
        rows = summarize(records, order)
        print(f"chart: {write_chart(rows, args.chart, best_strategy(rows))}")
    if args.mlflow:
        summary = log_to_mlflow(records, args.mlflow_uri or default_mlflow_uri(), args.experiment)
        print(f"mlflow: {summary['logged']} runs logged, {summary['skipped']} already there "
              f"(experiment {summary['experiment']!r}, id {summary['experiment_id']})")
    return 0


# ============================================================================================
# Command line
# ============================================================================================

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Class-imbalance ablation (issue 6).")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="train and evaluate the runs (GPU machine)")
    run.add_argument("--config", default=str(DEFAULT_CONFIG), help="ablation YAML (default conf/ablation.yml)")
    run.add_argument("--conf", default=str(gp.CONF_DIR), help="folder of the default parameters*.yml")
    run.add_argument("--data", help="dataset, as scripts/gpu_pipeline.py --data (default: ingestion.source_path)")
    run.add_argument("--out", default=os.environ.get("OUT") or str(DEFAULT_OUT),
                     help=f"folder of {RUNS_FILE} and ablation.log (default $OUT, else build/ablation_out)")
    run.add_argument("--work", default=str(gp.DEFAULT_WORK), help="scratch: extracted data, autoencoder cache")
    run.add_argument("--only", help="comma-separated strategies (default: all in the config)")
    run.add_argument("--seeds", help="comma-separated seeds (default: the config's)")
    run.add_argument("--done", action="append", help="a results file of earlier commands (repeatable)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override for every run (repeatable)")
    run.add_argument("--epochs", type=int, help="training.config.epochs for every run")
    run.add_argument("--ae-epochs", type=int, help="autoencoder.epochs")
    run.add_argument("--subset", type=int, help="at most N images per split (smoke runs)")
    run.add_argument("--device", help="device (default: the parameters' 'auto')")
    run.add_argument("--threads", type=int, help="torch CPU threads")
    run.add_argument("--dry-run", action="store_true", help="list the runs and what is done; train nothing")
    run.set_defaults(func=cmd_run)

    report = commands.add_parser("report", help="markdown table, chart, MLflow (here)")
    report.add_argument("--runs", nargs="+", default=[str(DEFAULT_OUT / RUNS_FILE)],
                        help="JSON-lines files (default build/ablation_out/ablation_runs.jsonl)")
    report.add_argument("--config", default=str(DEFAULT_CONFIG), help="for the strategies' order")
    report.add_argument("--markdown", help="also write the table to this file")
    report.add_argument("--chart", help="bar chart PNG path")
    report.add_argument("--mlflow", action="store_true", help=f"log every run to MLflow experiment {MLFLOW_EXPERIMENT}")
    report.add_argument("--mlflow-uri", help="tracking URI (default sqlite:///<project root>/mlflow.db)")
    report.add_argument("--experiment", default=MLFLOW_EXPERIMENT)
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
