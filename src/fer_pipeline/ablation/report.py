"""The ablation's report: mean ± std per strategy over seeds, the best strategy by PublicTest
(val) macro-F1, a markdown table, and one MLflow run per (strategy, seed).

PrivateTest (test) columns are reported, never used to choose. Needs only the standard library
(MLflow is imported by ``log_to_mlflow``).
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .records import run_key

MLFLOW_EXPERIMENT = "fer_ablation"
#: Classes whose recall the table shows (the two rarest-and-hardest of FER2013).
FOCUS_CLASSES = ("disgust", "fear")

#: (record key or (dict key, class), column title, scale, decimals)
COLUMNS: tuple[tuple[Any, str, float, int], ...] = (
    ("val_macro_f1", "val macro-F1", 100, 1),
    ("val_accuracy", "val acc", 100, 1),
    ("test_accuracy", "test acc", 100, 1),
    ("test_macro_f1", "test macro-F1", 100, 1),
    ("test_balanced_accuracy", "test bal. acc", 100, 1),
    *((("test_recall", name), f"test recall {name}", 100, 1) for name in FOCUS_CLASSES),
    # PrivateTest without the faces that duplicate a train or PublicTest face (leak-free)
    ("test_clean_accuracy", "clean test acc", 100, 1),
    ("test_clean_macro_f1", "clean test macro-F1", 100, 1),
    *((("test_clean_recall", name), f"clean test recall {name}", 100, 1) for name in FOCUS_CLASSES),
    ("train_seconds", "train s", 1, 0),
)
#: the strategy every other is compared with
BASELINE = "ce"


def _value(record: Mapping[str, Any], key: Any) -> float | None:
    value = (record.get(key[0]) or {}).get(key[1]) if isinstance(key, tuple) else record.get(key)
    return float(value) if isinstance(value, (int, float)) else None


def column_name(key: Any) -> str:
    """A summary row's key for a ``COLUMNS`` key (``test_recall_disgust`` for ``("test_recall", "disgust")``)."""
    return key if isinstance(key, str) else f"{key[0]}_{key[1]}"


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
            row[column_name(key)] = (mean, std)
        rows.append(row)
    return rows


def best_strategy(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """Highest mean PublicTest (val) macro-F1. Test figures play no part."""
    scored = [r for r in rows if not math.isnan(r["val_macro_f1"][0])]
    return max(scored, key=lambda r: r["val_macro_f1"][0])["strategy"] if scored else None


def versus_baseline(row: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> str:
    """The row's mean val macro-F1 minus the baseline's, in points, and whether the gap is larger
    than the spread between seeds (the sum of the two standard deviations)."""
    if baseline is None or row is baseline:
        return "–"
    (mean, std), (base_mean, base_std) = row["val_macro_f1"], baseline["val_macro_f1"]
    if math.isnan(mean) or math.isnan(base_mean):
        return "–"
    gap = (mean - base_mean) * 100
    if math.isnan(std) or math.isnan(base_std):
        return f"{gap:+.1f} (one seed)"
    spread = (std + base_std) * 100
    return f"{gap:+.1f} ({'beyond' if abs(gap) > spread else 'within'} ±{spread:.1f})"


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
    baseline = next((row for row in rows if row["strategy"] == BASELINE), None)
    titles = [title for _, title, *_ in COLUMNS]
    header = ["strategy", "seeds", titles[0], f"vs {BASELINE}", *titles[1:]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        name = f"**{row['strategy']}** (best)" if row["strategy"] == best else row["strategy"]
        cells = [_cell(*row[column_name(key)], scale, decimals) for key, _, scale, decimals in COLUMNS]
        cells = [name, ",".join(str(s) for s in row["seeds"]), cells[0], versus_baseline(row, baseline), *cells[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    schedules = sorted({str(r.get("schedule")) for r in latest_runs(records)})
    epochs = sorted({r.get("epochs") for r in latest_runs(records)}, key=str)
    notes = [
        "",
        f"Mean ± std over seeds (sample std); percentages except train s. Epochs per run: "
        f"{', '.join(map(str, epochs))}. val = FER2013 PublicTest, test = PrivateTest; clean test = "
        "PrivateTest without its faces that duplicate a training or PublicTest face (leak-free).",
        f"vs {BASELINE}: mean val macro-F1 minus {BASELINE}'s, in points; 'beyond' when the gap is larger than "
        "the two strategies' seed standard deviations added. train s is wall time on a machine that may have "
        "been doing other work: a cost, not a speed comparison.",
        f"Best strategy by mean PublicTest (val) macro-F1: **{best}**. Each run's epoch was also chosen on "
        "val macro-F1; PrivateTest columns are reported only, never used to choose.",
    ]
    if len(schedules) > 1:
        notes.append(f"WARNING: runs of {len(schedules)} different schedules/overrides are mixed in these files.")
    return "\n".join(lines + notes)


def log_to_mlflow(records: Sequence[Mapping[str, Any]], uri: str, experiment: str = MLFLOW_EXPERIMENT) -> dict:
    """One MLflow run per (strategy, seed) record, params + tags + metrics; skips ones already there."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
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
        params.update(env=record.get("env"), sets=json.dumps(record.get("sets", [])))
        metrics = {k: float(v) for k, v in record.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("seed", "epochs", "subset")
                   and math.isfinite(float(v))}
        for group in ("val_recall", "test_recall", "test_f1", "test_clean_recall"):
            for name, value in (record.get(group) or {}).items():
                metrics[f"{group}.{name}"] = float(value)
        machine = record.get("machine") or {}
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"{record['strategy']}-seed{record['seed']}"):
            mlflow.log_params({k: str(v) for k, v in params.items()})
            mlflow.log_metrics(metrics)
            for row in record.get("history") or []:  # the epoch curves, as a training run's
                mlflow.log_metrics({f"epoch.{k}": float(v) for k, v in row.items()
                                    if k != "epoch" and isinstance(v, (int, float)) and math.isfinite(float(v))},
                                   step=int(row["epoch"]))
            mlflow.set_tags({"strategy": record["strategy"], "seed": str(record["seed"]), "ablation_key": key,
                             "device": str(record.get("device")), "precision": str(record.get("precision")),
                             "torch": str(record.get("torch") or machine.get("torch")),
                             "source": "benchmarks/ablation.py"})
        logged += 1
    return {"experiment": experiment, "experiment_id": experiment_id, "logged": logged, "skipped": skipped}
